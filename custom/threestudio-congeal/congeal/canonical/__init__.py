"""The canonical shape: the baked grid format, builders from SDFs and meshes, and the renderer seam (grid ray marching)."""
