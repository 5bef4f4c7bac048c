"""Pose-aware edits carried onto every photo through the canonical surface.

Modules:
    decals          a decal placed on one photo, carried onto every photo
    textures        canonical-space (triplanar) textures painted onto every photo
    image_sampling  bilinear reads of decal and texture images
    edit_folder     the edit output folder RUN/edits/<edit>/ (atomic writes)
"""
