"""Automatic scorers: the offline judge (judge.py) and likelihood options (logprobs.py).

Their results are kept apart from human annotations: judge scores go to a sidecar file
next to the session (judgements.py). The rule lists a scenario declares are part of the
scenario format (scenario/rules.py) and are applied on the fly at export and report time.
"""
