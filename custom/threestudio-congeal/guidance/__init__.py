"""Guidance adapters (textual inversion, MVDream); the extension's `__init__` imports every module here."""
