"""Automatic scorers: rule-based first passes (rules.py) and the offline judge (judge.py).

Their results are kept apart from human annotations: rules are applied on the fly, judge
scores go to a sidecar file next to the session (judgements.py).
"""
