"""What users do with a registered collection, one sub-package per feature.

    from congeal.apps.labels.propagation import propagate_labels      # `congeal propagate`
    from congeal.apps.edits.decals import composite_decal             # `congeal edit --decal`
    from congeal.apps.edits.textures import texture_edit              # `congeal edit --texture`
    from congeal.apps.viewer.server import start_viewer               # `congeal view`
    from congeal.apps.viewer.html_page import export_html             # `congeal view --export`

Sub-packages and modules:
    labels/       label once, propagate to every photo (label file, propagation, COCO, pictures)
    edits/        pose-aware edits: decals and canonical-space textures, and their output folder
    viewer/       `congeal view`: the scene as arrays, the viser server, the self-contained HTML page
    export/       `congeal export`: COLMAP model, GLB scene, mesh files, nerfstudio data with masks
    walkthrough   all of it on a run in one call (what `congeal demo` shows), and the checker edit

What the features share lives where it belongs: the finished run as they read it
(`congeal.run.registered_run`), canonical-surface look-ups on the maps (`congeal.run.surface`), the
photo grid picture (`congeal.viz.photo_grid`), the canonical's triangle mesh
(`congeal.canonical.marching_tetrahedra`).

Package order: apps imports common, io, geometry, canonical, features, registration, viz and run only.
"""
