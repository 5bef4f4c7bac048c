"""Plain helpers shared by the threestudio adapters (no registered names live here)."""
