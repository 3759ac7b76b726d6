"""The app's screens: home, run, annotate, compare, session browser, and dialogs."""
