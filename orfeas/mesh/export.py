"""`export_mesh`: a finished mesh (millimetres, Z up) → the bytes of one file format.

    format  content type        units / axes            colour
    glb     model/gltf-binary   metres, Y up (glTF 2.0) COLOR_0 per vertex, linear (glTF's rule)
    stl     model/stl           millimetres, Z up       none (binary STL has no standard colour)
    obj     model/obj           millimetres, Z up       `v x y z r g b` (the common extension), sRGB;
                                                        a UV texture: `vt` + `mtllib model.mtl`,
                                                        the MTL's `map_Kd model.png` (sRGB)
    ply     application/ply     millimetres, Z up       red/green/blue/alpha vertex properties, sRGB
    3mf     model/3mf           millimetres (declared)  colour parts: a base material per part and
                                                        PrusaSlicer volumes with extruders; else a
                                                        colour group, per triangle corner (sRGB)

PLY has no registered media type; `application/ply` is what the storage layer and the other
formats' handling already use (the type most tools that serve PLY send), so one name is used
throughout. GLB is converted because glTF fixes both: "the units for all linear distances are
meters" and "glTF uses a right-handed coordinate system … +Y is up" (glTF 2.0 §3.4). 3MF is
written here rather than by trimesh, whose writer names things with fresh UUIDs: the same mesh
gives the same bytes (fixed zip timestamps, sorted entries), so caches and checksums hold.

A UV-textured mesh (trimesh TextureVisuals with an image: a baked Hunyuan3D-Paint texture) is
written to GLB as TEXCOORD_0 with the image as an embedded sRGB PNG baseColorTexture; OBJ as
three sibling files (`export_files`): model.obj (v/vt/vn/f, `mtllib model.mtl`), model.mtl
(`map_Kd model.png`) and model.png, which every OBJ reader (Blender, MeshLab, trimesh) resolves
by those relative names once the three lie in one folder (they are stored under one key prefix);
PLY and 3MF take the texture sampled at each vertex as vertex colours, STL its geometry.

A mesh of colour parts (a flat-colour picture's regions: one closed solid per colour, side by
side) prints in colour: the 3MF's one object lists its triangles part by part, each part in its
own base material, and Metadata/Slic3r_PE_model.config makes each part a PrusaSlicer volume with
its own extruder (1, 2, …); the STL is the parts' union, one closed solid.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from orfeas.errors import InvalidInput, OrfeasError, StageFailed
from orfeas.mesh.colors import vertex_colours
from orfeas.types import Artifact

if TYPE_CHECKING:
    import trimesh

CONTENT_TYPES = {
    "glb": "model/gltf-binary",
    "stl": "model/stl",
    "obj": "model/obj",
    "ply": "application/ply",
    "3mf": "model/3mf",
    # The two siblings of a UV-textured OBJ (IANA registered model/mtl in 2020).
    "mtl": "model/mtl",
    "png": "image/png",
}
# The names a textured OBJ and its MTL give their siblings: the storage keys' own file names
# (`{prefix}/{job_id}/model.{fmt}`, orfeas.storage.base.artifact_key), so a folder holding the
# downloaded files, or the CLI's output folder, opens as it is.
OBJ_SIBLING_NAMES = {"mtl": "model.mtl", "png": "model.png"}
OBJ_MATERIAL = "texture"

# Build frame (mm, Z up) → glTF (m, Y up): x stays, y' = z, z' = -y, so the part's front (-Y,
# facing the slicer's viewer) faces +Z, glTF's front. A rotation: winding stays outward.
BUILD_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) * 0.001


def export_mesh(mesh: trimesh.Trimesh, fmt: str, *, stage: str = "export") -> Artifact:
    """The mesh as `fmt` bytes with its content type and sha256; an unknown format is invalid_input."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        known = ", ".join(sorted(_WRITERS))
        raise InvalidInput(f"unknown mesh format {fmt!r} (one of {known})", field="formats")
    textured = has_uv_texture(mesh)
    if fmt == "obj" and textured:
        return export_files(mesh, fmt, stage=stage)[0]
    if fmt != "glb" and textured:
        mesh = _copy(mesh)  # the texture sampled per vertex, seams welded
    return _artifact(fmt, _written(lambda: writer(mesh), fmt, stage))


def export_files(mesh: trimesh.Trimesh, fmt: str, *, stage: str = "export") -> list[Artifact]:
    """Every file of one format, the mesh's own first: a UV-textured OBJ is the OBJ, its MTL and
    its PNG (formats "obj", "mtl", "png"); any other format is the one file `export_mesh` writes."""
    texture = uv_texture(mesh)
    if fmt != "obj" or texture is None:
        return [export_mesh(mesh, fmt, stage=stage)]
    uvs, png = texture
    obj = _written(lambda: _textured_obj(mesh, uvs), fmt, stage)
    return [_artifact("obj", obj), _artifact("mtl", _obj_material()), _artifact("png", png)]


def _written(write: Callable[[], bytes], fmt: str, stage: str) -> bytes:
    """A writer's bytes, a library's failure translated into StageFailed naming the format."""
    try:
        return write()
    except (OrfeasError, MemoryError):
        raise
    except Exception as exc:
        raise StageFailed(f"{fmt} export failed: {type(exc).__name__}: {exc}", stage=stage) from exc


def _artifact(fmt: str, data: bytes) -> Artifact:
    return Artifact(
        format=fmt, data=data, content_type=CONTENT_TYPES[fmt], sha256=hashlib.sha256(data).hexdigest()
    )


def _copy(mesh: trimesh.Trimesh, vertices: np.ndarray | None = None) -> trimesh.Trimesh:
    """A bare copy of the mesh (new vertices if given) with its colours as plain vertex colours."""
    import trimesh

    copy = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices if vertices is None else vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        vertex_colors=vertex_colours(mesh),
        process=False,
    )
    if has_uv_texture(mesh):
        # A UV atlas splits vertices along its seams: weld the copies so the solid is closed again
        # (exact positions only; each copy sampled the same texel colour up to the seam's padding).
        copy.merge_vertices(merge_tex=True, merge_norm=True)
    return copy


def _glb(mesh: trimesh.Trimesh) -> bytes:
    """glTF 2.0 binary: linear COLOR_0, crease-split normals and a material (see orfeas.mesh.gltf)."""
    from orfeas.mesh.gltf import write_glb

    visual: Any = getattr(mesh, "visual", None)  # a trimesh visual (ColorVisuals or TextureVisuals)
    texture = uv_texture(mesh)
    if texture is not None:
        uvs, png = texture
        return write_glb(
            np.asarray(mesh.vertices, dtype=np.float64) @ BUILD_TO_GLTF.T,
            np.asarray(mesh.faces, dtype=np.int64),
            uvs=np.column_stack([uvs[:, 0], 1.0 - uvs[:, 1]]),  # trimesh's v counts from the bottom
            texture_png=png,
        )
    face_colours = None
    if getattr(visual, "kind", None) == "face":  # colours meant per face: kept sharp along face edges
        face_colours = np.asarray(visual.face_colors, dtype=np.uint8)
    return write_glb(
        np.asarray(mesh.vertices, dtype=np.float64) @ BUILD_TO_GLTF.T,
        np.asarray(mesh.faces, dtype=np.int64),
        None if face_colours is not None else vertex_colours(mesh),
        face_colours=face_colours,
    )


def _uv_image(mesh: trimesh.Trimesh) -> tuple[Any, Any] | None:
    """(uv per vertex, texture image) of a mesh with a UV texture image, else None (nothing encoded)."""
    visual = getattr(mesh, "visual", None)
    if getattr(visual, "kind", None) != "texture":
        return None
    uv = getattr(visual, "uv", None)
    image = getattr(getattr(visual, "material", None), "baseColorTexture", None)
    if image is None:
        image = getattr(getattr(visual, "material", None), "image", None)
    if uv is None or image is None or len(uv) != len(mesh.vertices):
        return None
    return uv, image


def has_uv_texture(mesh: trimesh.Trimesh) -> bool:
    """Whether the mesh carries a UV texture image (what `uv_texture` would encode)."""
    return _uv_image(mesh) is not None


def uv_texture(mesh: trimesh.Trimesh) -> tuple[np.ndarray, bytes] | None:
    """(uv per vertex, sRGB PNG bytes) of a mesh with a UV texture image, else None."""
    found = _uv_image(mesh)
    if found is None:
        return None
    uv, image = found
    buffer = io.BytesIO()
    # compress_level 6: a 1024² baked atlas in ~0.15 s; the PNG is lossless at every level. Encoded
    # only where the bytes are written (GLB, the OBJ's PNG): `has_uv_texture` is the cheap test.
    image.convert("RGB").save(buffer, format="PNG", compress_level=6)
    return np.asarray(uv, dtype=np.float64), buffer.getvalue()


def _stl(mesh: trimesh.Trimesh) -> bytes:
    from trimesh.exchange.stl import export_stl

    return bytes(export_stl(_copy(geometry_only(mesh))))


def geometry_only(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """For a format without colour: a closed, coloured mesh as one plain solid.

    A mesh of colour parts (see `colour_parts`: one closed solid per colour, side by side) becomes
        their union, so the walls where two colours meet are gone and the solid is closed as a whole.
        Any other closed, coloured mesh has the vertices that only carried colour merged away (a photo
        extruded as a logo has its caps refined for its colours: 37k faces on the sample emblem at
        quality 5, 1k without them), the surface moved by at most 1e-5 of the mesh's size.
        Anything else is returned as it is."""
    if vertex_colours(mesh) is None or not mesh.is_watertight:
        return mesh
    from manifold3d import Manifold, OpType

    from orfeas.shape.polygons import manifold_to_trimesh, trimesh_to_manifold

    parts = colour_parts(mesh)
    groups = [faces for _, faces in parts] if parts is not None else _bodies(mesh)
    if len(groups) > 1:
        # Colour parts, or closed bodies side by side (colour solids repainted by another
        # texture): joined, so no wall where two meet is left inside the solid.
        solids = [trimesh_to_manifold(_submesh(mesh, faces)) for faces in groups]
        if any(s.is_empty() for s in solids):
            return mesh
        union = manifold_to_trimesh(Manifold.batch_boolean(solids, OpType.Add))
        return union if union.is_watertight else mesh
    solid = trimesh_to_manifold(mesh)
    if solid.is_empty():  # manifold3d refused it (not a 2-manifold after all)
        return mesh
    plain = manifold_to_trimesh(solid)
    return plain if plain.is_watertight and len(plain.faces) < len(mesh.faces) else mesh


# A mesh is written as colour parts when it has at most this many colours (the request's own
# limit on a palette), so a photo's per-vertex colours never become thousands of parts.
MAX_PARTS = 16


def colour_parts(mesh: trimesh.Trimesh) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """(RGBA, face indices) for each colour, in order of first appearance, when the mesh is made of
    colour parts: 2 to MAX_PARTS colours, every face in one colour, each colour's faces closed
    (every edge used by exactly two of them). None otherwise."""
    colours = vertex_colours(mesh)
    if colours is None or len(mesh.faces) == 0:
        return None
    faces = np.asarray(mesh.faces, dtype=np.int64)
    packed = np.ascontiguousarray(colours).view(np.uint32).ravel()[faces]
    if not np.all(packed == packed[:, :1]):
        return None
    values, first, owner = np.unique(packed[:, 0], return_index=True, return_inverse=True)
    if not 2 <= len(values) <= MAX_PARTS:
        return None
    parts = []
    for i in np.argsort(first).tolist():
        own = np.flatnonzero(owner.reshape(-1) == i)
        edges = np.sort(faces[own][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, uses = np.unique(edges, axis=0, return_counts=True)
        if not np.all(uses == 2):
            return None
        parts.append((colours[faces[own[0], 0]], own))
    return parts


def _bodies(mesh: trimesh.Trimesh) -> list[np.ndarray]:
    """Face indices of each piece whose faces are linked through shared vertices."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(mesh.faces, dtype=np.int64)
    n, f = len(mesh.vertices), len(faces)
    # Faces and vertices as one graph: a face links to its three corners.
    rows = np.repeat(np.arange(f), 3)
    graph = coo_matrix((np.ones(3 * f, np.int8), (rows, f + faces.ravel())), shape=(f + n, f + n))
    _, label = connected_components(graph, directed=False)
    _, owner = np.unique(label[:f], return_inverse=True)
    return [np.flatnonzero(owner == i) for i in range(int(owner.max()) + 1)] if f else []


def _submesh(mesh: trimesh.Trimesh, faces: np.ndarray) -> trimesh.Trimesh:
    import trimesh

    part = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces)[faces], process=False
    )
    part.remove_unreferenced_vertices()
    return part


def _obj(mesh: trimesh.Trimesh) -> bytes:
    """Wavefront OBJ: `v x y z [r g b]` (colours as 0..1, the common extension) and 1-based faces."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64) + 1
    colours = vertex_colours(mesh)
    if colours is None:
        lines = _format_rows("v %.9g %.9g %.9g", vertices)
    else:
        # Four decimals are finer than one step of an 8-bit channel (1/255 ≈ 0.0039).
        rgb = np.round(colours[:, :3] / 255.0, 4)
        lines = _format_rows("v %.9g %.9g %.9g %.4g %.4g %.4g", np.hstack([vertices, rgb]))
    text = "# ORFEAS mesh, millimetres, Z up\n" + lines + _format_rows("f %d %d %d", faces)
    return text.encode("ascii")


def _textured_obj(mesh: trimesh.Trimesh, uvs: np.ndarray) -> bytes:
    """OBJ with one `vt` and one `vn` per vertex (a UV atlas already split its vertices at the
    seams), faces `f v/vt/vn`, and the material of `_obj_material`."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64) + 1
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    corners = np.repeat(faces, 3, axis=1)  # v/vt/vn share the index: one of each per vertex
    text = (
        "# ORFEAS mesh, millimetres, Z up\n"
        f"mtllib {OBJ_SIBLING_NAMES['mtl']}\n"
        + _format_rows("v %.9g %.9g %.9g", vertices)
        # trimesh's v counts from the bottom, as OBJ's does; 7 digits resolve a texel of 8k².
        + _format_rows("vt %.7g %.7g", uvs)
        + _format_rows("vn %.6g %.6g %.6g", normals)
        + f"usemtl {OBJ_MATERIAL}\n"
        + _format_rows("f %d/%d/%d %d/%d/%d %d/%d/%d", corners)
    )
    return text.encode("ascii")


def _obj_material() -> bytes:
    """The MTL: white diffuse modulated by the texture, no specular, opaque (`illum 1`)."""
    return (
        f"newmtl {OBJ_MATERIAL}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
        f"map_Kd {OBJ_SIBLING_NAMES['png']}\n"
    ).encode("ascii")


def _ply(mesh: trimesh.Trimesh) -> bytes:
    from trimesh.exchange.ply import export_ply

    return bytes(export_ply(_copy(mesh), encoding="binary", vertex_normal=False))


# -- 3MF ------------------------------------------------------------------------------------
_3MF_CORE = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
_3MF_MATERIAL = "http://schemas.microsoft.com/3dmanufacturing/material/2015/02"
_3MF_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    '<Default Extension="config" ContentType="application/xml"/>'
    "</Types>\n"
)
_3MF_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
    "</Relationships>\n"
)
# The earliest time a zip entry can carry: every entry gets it, so the bytes never depend on when.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Deflate level 1: for a 330k-face coloured model (43 MB of XML) 0.43 s and 10.4 MB, against
# 1.39 s and 8.4 MB at the default 6; a slicer reads the file once, the job waits for every second.
_ZIP_LEVEL = 1


def _3mf(mesh: trimesh.Trimesh) -> bytes:
    parts = colour_parts(mesh)
    entries = [
        ("[Content_Types].xml", _3MF_TYPES),
        ("_rels/.rels", _3MF_RELS),
        ("3D/3dmodel.model", _3mf_model(mesh, parts)),
    ]
    if parts is not None:
        entries.append((_PRUSA_CONFIG, _prusa_model_config([len(faces) for _, faces in parts])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"), compresslevel=_ZIP_LEVEL)
    return buffer.getvalue()


def _3mf_model(mesh: trimesh.Trimesh, parts: list[tuple[np.ndarray, np.ndarray]] | None = None) -> str:
    """The 3MF model part: one object, millimetres.

    Colour parts (see `colour_parts`) are one base material each, every triangle naming its own,
    and the triangles are written part after part, so the slicer's config can cut the object into
    one volume per part by triangle range. Other vertex colours are a material colour group.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    colours = vertex_colours(mesh)
    out = io.StringIO()
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(f'<model unit="millimeter" xml:lang="en-US" xmlns="{_3MF_CORE}" xmlns:m="{_3MF_MATERIAL}">\n')
    out.write("<resources>\n")
    object_attrs = ""
    triangle_format = '<triangle v1="%d" v2="%d" v3="%d"/>'
    rows: np.ndarray = faces
    if parts is not None:
        # Base materials are in the core specification (no extension needed), so every 3MF reader
        # shows them; displaycolor is sRGB.
        out.write('<basematerials id="2">\n')
        for i, (rgba, _) in enumerate(parts):
            out.write(f'<base name="{_part_name(i, rgba)}" displaycolor="{_hex(rgba)}"/>\n')
        out.write("</basematerials>\n")
        object_attrs = ' pid="2" pindex="0"'
        triangle_format = '<triangle v1="%d" v2="%d" v3="%d" pid="2" p1="%d"/>'
        order = np.concatenate([own for _, own in parts])
        index = np.concatenate([np.full(len(own), i) for i, (_, own) in enumerate(parts)])
        rows = np.hstack([faces[order], index[:, None]])
    elif colours is not None:
        # One uint32 per RGBA colour: a 1-D unique is several times faster than rows.
        packed = np.ascontiguousarray(colours).view(np.uint32).ravel()
        palette, corner = np.unique(packed, return_inverse=True)
        out.write('<m:colorgroup id="2">\n')
        colour_rows = palette.view(np.uint8).reshape(-1, 4).tolist()
        out.write(
            "".join(f'<m:color color="#{r:02X}{g:02X}{b:02X}{a:02X}"/>\n' for r, g, b, a in colour_rows)
        )
        out.write("</m:colorgroup>\n")
        object_attrs = ' pid="2" pindex="0"'
        triangle_format = '<triangle v1="%d" v2="%d" v3="%d" pid="2" p1="%d" p2="%d" p3="%d"/>'
        rows = np.hstack([faces, corner.reshape(-1)[faces]])
    out.write(f'<object id="1" type="model"{object_attrs}>\n<mesh>\n<vertices>\n')
    # %.9g: 1 nm resolution up to a metre, more than any printer, and shortest text for round values.
    out.write(_format_rows('<vertex x="%.9g" y="%.9g" z="%.9g"/>', vertices))
    out.write("</vertices>\n<triangles>\n")
    out.write(_format_rows(triangle_format, rows))
    out.write("</triangles>\n</mesh>\n</object>\n</resources>\n")
    out.write('<build>\n<item objectid="1"/>\n</build>\n</model>\n')
    return out.getvalue()


# PrusaSlicer's own model config (src/libslic3r/Format/3mf.cpp): per object, its volumes as
# ranges of the object's triangles (firstid..lastid, inclusive, 0-based), each with metadata;
# `extruder` is 1-based. PrusaSlicer loads the 3MF's object as one object of several volumes and
# prints each with its extruder (tests/test_slicer.py slices it). A 3MF assembly of components
# instead loads there as separate objects that the slicer arranges apart, so one object it is.
_PRUSA_CONFIG = "Metadata/Slic3r_PE_model.config"


def _prusa_model_config(counts: list[int]) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<config>\n<object id="1" instances_count="1">\n']
    out.append('<metadata type="object" key="name" value="model"/>\n')
    first = 0
    for i, count in enumerate(counts):
        out.append(f'<volume firstid="{first}" lastid="{first + count - 1}">\n')
        out.append(f'<metadata type="volume" key="name" value="colour {i + 1}"/>\n')
        out.append(f'<metadata type="volume" key="extruder" value="{i + 1}"/>\n')
        out.append("</volume>\n")
        first += count
    out.append("</object>\n</config>\n")
    return "".join(out)


def _hex(rgba: np.ndarray) -> str:
    r, g, b, a = (int(v) for v in rgba)
    return f"#{r:02X}{g:02X}{b:02X}{a:02X}"


def _part_name(i: int, rgba: np.ndarray) -> str:
    return f"colour {i + 1} {_hex(rgba)[:7]}"


def _format_rows(template: str, rows: np.ndarray) -> str:
    """Every row through `template`, one line each: one %-format call over the whole array."""
    if len(rows) == 0:
        return ""
    return ((template + "\n") * len(rows)) % tuple(rows.ravel().tolist())


_WRITERS: dict[str, Callable[[trimesh.Trimesh], bytes]] = {
    "glb": _glb,
    "stl": _stl,
    "obj": _obj,
    "ply": _ply,
    "3mf": _3mf,
}
