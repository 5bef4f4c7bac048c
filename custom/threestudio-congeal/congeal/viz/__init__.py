"""Pictures from arrays: overlay grids, score and NOCS maps, contact sheets, loss curves."""
