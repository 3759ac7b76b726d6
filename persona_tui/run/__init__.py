"""Running a scenario: from a scenario and a loaded backend to a session file.

The plan (trials as conditions × probes × samples, their seeds and prefix-reusing order,
in `plan`), the prompt each trial sends (`prompts`), the runner that generates and saves
them with progress events, pause and cancel (`runner`), and a session's life: creating
it, and resuming it on the same model (`lifecycle`). The CLI and the app both run here.
"""
