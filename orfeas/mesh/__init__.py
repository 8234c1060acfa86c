"""Mesh post-processing and export: a shape's mesh → a printable part → file bytes.

    colors.py     vertex colours out of any trimesh visual, and carried onto a new vertex set
    repair.py     merge close vertices, drop degenerate/duplicate faces, consistent outward winding,
                  close small holes
    decimate.py   quadric decimation to a face budget (fast_simplification), colours kept
    placement.py  picture frame → build frame, uniform scale to millimetres, onto the build plate
    finish.py     `finish_mesh`: the steps above in order, with progress and deadline checks
    export.py     `export_mesh`: GLB, STL, OBJ, PLY, 3MF bytes with content type and sha256
    gltf.py       `write_glb`: linear COLOR_0, crease-split normals, a PBR material; a GLB reader
    read_3mf.py   `read_3mf`: a 3MF's triangles and corner colours (stdlib only, for checks and renders)

Units: a finished mesh is in millimetres with Z up (the build direction), the slicer convention;
only GLB converts, to metres and Y up as glTF requires.
"""
