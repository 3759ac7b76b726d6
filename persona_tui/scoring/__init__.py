"""Automatic scorers of finished sessions: the offline judge (`judge`).

It scores from next-token probabilities (`logprobs`: continuations and numbers scored on
any backend with `TokenLogprobs`) or by greedy decoding. Its results are kept apart from
human annotations in a sidecar file next to the session (`judgements`). The likelihood
probes a run measures are part of the run (run/options.py). The rule lists a scenario
declares are part of the scenario format (scenario/rules.py) and are applied on the fly
at export and report time.
"""
