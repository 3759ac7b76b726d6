"""Model backends. Heavy engine imports happen inside each backend module, never here."""
