"""`congeal view`: the registered collection in 3D.

Modules:
    scene       the viewer's scene as plain arrays: mesh, camera frusta, image planes, alternatives
    server      the viser server (clicking a photo shows its correspondences)
    html_page   a self-contained HTML page of the scene (opens without Python or a network)
"""
