"""The app's screens, each a module with its styles in a `.tcss` beside it (`CSS_PATH`):
home, run, train, annotate, compare, results, the session browser (`sessions`), and the
dialogs (`dialogs`: confirm, text prompt, record; `model_picker`; `adapters`)."""
