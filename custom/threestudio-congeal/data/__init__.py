"""Data-module adapters (image collections); the extension's `__init__` imports every module here."""
