"""Running a scenario: the one door through which every run opens and finishes.

`lifecycle.open_run` opens a run (new or resumed: the model, the adapters, the plan, the
session) and `finish.finish_run` finishes it (sampling, the option pass, the final
status), reporting through one event type (`events`) that the CLI, `persona-tui study`
and the app's Run screen consume. Below them: the plan (`plan`: trials as conditions ×
probes × samples, their seeds and prefix-reusing order, the batch, computed once), the
prompt each trial sends (`prompts`), the runner that generates and saves trials with
pause and cancel (`runner`), the likelihood probes scored after sampling (`options`), and
the adapter rules a run obeys (`adapters`).
"""
