"""Automatic scorers: the offline judge (`judge`) and likelihood options (`options`).

Both score from next-token probabilities (`logprobs`: continuations and numbers scored on
any backend with `TokenLogprobs`). Their results are kept apart from human annotations:
judge scores go to a sidecar file next to the session (`judgements`); option scores are
saved in the session as `[[option_cells]]`. The rule lists a scenario declares are part of
the scenario format (scenario/rules.py) and are applied on the fly at export and report
time.
"""
