"""Weights-free shape backends: a picture's mask and colours → a closed mesh in the picture frame.

    raster.py    the picture frame (pixel ↔ model units) and resampling of masks and luminance
    contours.py  marching squares: a float field → closed outline rings at a level
    polygons.py  rings → clean polygons with holes (nesting, specks, simplification, validity);
                 manifold3d solids → trimesh meshes without degenerate or needle triangles
    extrude.py   `extrude`: the outline as a flat solid of constant thickness (logos, badges)
    relief.py    `relief`: luminance as a heightfield solid on a base (photos, lithophane-like)
    select.py    which of the two `auto` picks for a cutout

Units: the picture's longest side is 1.0; export scales to millimetres later.
"""
