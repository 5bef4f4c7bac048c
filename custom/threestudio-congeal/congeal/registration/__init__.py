"""Stage 3 algorithm, in data-flow order: framing -> search -> refine -> mapping."""
