"""What users do with a registered collection: label once and propagate, pose-aware edits, a 3D viewer.

    from congeal.apps.run_access import RegisteredRun
    from congeal.apps.propagate import propagate_labels          # `congeal propagate`
    from congeal.apps.decals import composite_decal               # `congeal edit --decal`
    from congeal.apps.textures import texture_edit                # `congeal edit --texture`
    from congeal.apps.viewer import start_viewer                  # `congeal view`
    from congeal.apps.export import export_html                   # `congeal view --export`

Modules (one concept each):
    run_access      a finished run as the apps read it: names, photos, maps, poses, canonical (validated)
    surface         canonical-surface look-ups on the maps: lifting pixels, the same-surface test, object sizes
    labels          the label file users write (`congeal-labels-v1`), validated
    propagate       labels of some photos -> every photo, with visibility and confidence (JSON document)
    coco            the propagated labels as a COCO-keypoints document
    label_pictures  the propagated labels drawn on every photo, as a grid
    decals          a decal placed on one photo, carried onto every photo through the canonical surface
    textures        canonical-space (triplanar) textures painted onto every photo
    sampling        bilinear reads of decal and texture images
    edits           the edit output folder RUN/edits/<edit>/ (atomic writes)
    photo_grid      fitting photos of any size into one labelled grid picture
    mesh            marching tetrahedra: a coloured triangle mesh from the baked canonical grid
    scene           the viewer's scene as plain arrays: mesh, camera frusta, image planes, alternatives
    viewer          the viser server of `congeal view` (clicking a photo shows its correspondences)
    export          a self-contained HTML page of the scene (opens without Python or a network)
    walkthrough     all of it on a run in one call (what `congeal demo` shows), and the checker edit

Package order: apps imports common, io, geometry, canonical, features, registration, viz and run only.
"""
