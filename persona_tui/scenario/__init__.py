"""Scenarios: the study a session runs, as a validated model.

The scenario model (frozen dataclasses in `model`), parsing and validation of scenario
files with errors that name file, line and fix (`parse`, on the table reader of
`_util.tables`), the training tables of a training study (`training`), test framings
(`test_framings`), the traits persona vectors are extracted for (`traits`), a condition's
steering and the steering sweep (`steering`), the rule lists a scenario may declare
(`rules`), the catalog of built-in and user scenarios (`catalog`) and importers that turn
other studies' files into scenarios (`importers`, and `persona_statements` for
model-written persona statements). See docs/scenario-format.md.
"""
