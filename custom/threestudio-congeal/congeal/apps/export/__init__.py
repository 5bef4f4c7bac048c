"""`congeal export`: a registered collection handed to the tools people already use.

    from congeal.apps.export.run_export import export_run
    summary = export_run("out/run", ["colmap", "glb"], "out/export")

Modules:
    export_folder     one output folder staged beside its destination and swapped in whole (never half written)
    photo_files       the photos an export carries (failed ones left out, with the reason), upright copies, masks
    surface_points    points on the canonical surface, coloured, with the photos that see each (from the maps)
    colmap_model      a COLMAP model (binary and text) + images/ + masks/: splatting trainers, COLMAP pipelines
    glb_builder       a minimal glTF 2.0 binary (GLB) writer: meshes, lines, cameras, textures
    gltf_scene        the canonical mesh and every photo's camera, frustum and photo in one GLB (Blender, browsers)
    mesh_files        the canonical alone as OBJ / PLY / GLB at a chosen resolution and iso-level, with its frame
    nerfstudio_data   transforms.json with masks and a point cloud: `ns-train splatfacto --data DIR`
    run_export        the formats by name, the export summary (export.json) and the commands that open each
"""
