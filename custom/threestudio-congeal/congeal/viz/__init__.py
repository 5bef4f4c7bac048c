"""Pictures from arrays: labelled image grids, overlay grids and search score maps, contact sheets, loss curves."""
