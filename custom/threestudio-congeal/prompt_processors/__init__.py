"""Prompt-processor adapters (the learned congeal token); the extension's `__init__` imports every module here."""
