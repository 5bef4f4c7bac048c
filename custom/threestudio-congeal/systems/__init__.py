"""System adapters (`congeal-system`); the extension's `__init__` imports every module here."""
