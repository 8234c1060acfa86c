"""`write_glb`: a mesh in glTF's frame (metres, Y up) → GLB bytes by glTF 2.0's rules.

What a viewer needs to show the picture's colours, and how each is written:

    POSITION  FLOAT VEC3, with the min/max the spec requires
    NORMAL    FLOAT VEC3, unit length; smooth within a surface, split at creases (see below)
    COLOR_0   UNSIGNED_SHORT normalized VEC4, *linear* (glTF 2.0 §3.7.2.1: vertex colours are
              linear; a viewer multiplies them into baseColor and encodes the result to sRGB
              for the screen). The mesh's 8-bit sRGB colours go through the exact sRGB transfer
              function first; written as sRGB, red (220, 30, 30) would show as (239, 96, 96).
    TEXCOORD_0  FLOAT VEC2, when the mesh has a UV texture: (0, 0) is the image's top-left corner
              (glTF's convention; trimesh and OBJ count v from the bottom, `export` flips it)
    material  pbrMetallicRoughness: baseColorFactor white (so COLOR_0 is the colour), metallic 0
              (a painted or printed plastic), roughness 0.8 (a matte print); one-sided, since
              every mesh here is closed with outward faces.

Why 16-bit linear colour: in 8 bits, linear loses the darks. One step, 1/255 = 0.0039 linear,
is sRGB 13 above black, so sRGB levels 0..6 round to 0 and only 183 of the 256 levels survive a
round trip (the worst comes back 6 off). Every sRGB level is at least 0.000304 linear from its
neighbour (levels 0 and 1), 19.9 steps of 1/65535, so 16 bits keep all 256 exactly, at 8 bytes
a vertex; FLOAT VEC3 would be as exact at 12. The fourth channel carries alpha; the material
is opaque (glTF's default alphaMode), so viewers ignore it, as a print does.

Creases: a vertex where faces meet at more than CREASE_DEG gets one copy per side, each with
its side's normal, so an extruded logo's cap stays flat up to its rim and its side walls stay
walls (a shared normal there would point 45° out and shade the whole rim as a bevel). Within a
smooth surface (a relief, a finely traced round outline) normals are averaged, weighted by each
face's angle at the vertex. Corners that agree on vertex, normal and colour share one vertex.

A UV texture goes in as PNG bytes, embedded in the BIN chunk (an image bufferView, no target) and
referenced as the material's baseColorTexture: glTF reads a baseColor image as sRGB, which is
what a baked or painted picture is, so its bytes are stored as they are. Its sampler is linear
with mipmaps and clamps at the edges (the atlas is padded around every chart for the mipmaps).

The bytes depend only on the mesh: fixed JSON key order, no timestamps, no generated names.
"""

from __future__ import annotations

import json
import struct
from typing import Any, cast

import numpy as np

# 40°: a round outline traced with more than 9 segments shades round, while a box's 90° and a
# hexagon's 60° corners (and an extruded cap's rim) stay sharp.
CREASE_DEG = 40.0
ROUGHNESS = 0.8
GENERATOR = "ORFEAS"

_FLOAT, _USHORT, _UINT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP = 9729, 9987, 33071
_GLB_MAGIC, _GLB_VERSION = 0x46546C67, 2  # b"glTF"
_CHUNK_JSON, _CHUNK_BIN = 0x4E4F534A, 0x004E4942  # b"JSON", b"BIN\0"
# Corner pairs compared at once while averaging normals: bounds memory to ~200 MB of temporaries.
_PAIR_BLOCK = 4_000_000


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """8-bit sRGB values → linear light in 0..1, by the sRGB transfer function (IEC 61966-2-1)."""
    c = np.asarray(values, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Linear light in 0..1 → sRGB in 0..255 (floats), the inverse of `srgb_to_linear`."""
    c = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return 255.0 * np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


# One entry per 8-bit sRGB level: its linear value as a normalized unsigned short.
_SRGB_TO_LINEAR_U16 = np.round(srgb_to_linear(np.arange(256)) * 65535.0).astype(np.uint16)


def write_glb(
    vertices: np.ndarray,
    faces: np.ndarray,
    colours: np.ndarray | None = None,
    *,
    face_colours: np.ndarray | None = None,
    uvs: np.ndarray | None = None,
    texture_png: bytes | None = None,
    crease_deg: float = CREASE_DEG,
) -> bytes:
    """A GLB holding one triangle mesh. `vertices` (n, 3) in metres, Y up; `faces` (m, 3);
    `colours` (n, 4) uint8 sRGB RGBA per vertex, or `face_colours` (m, 4) per face (then colours
    stay sharp along every edge where the face colour changes), or neither; `uvs` (n, 2) with
    `texture_png` for a UV texture (glTF's orientation: v = 0 at the image's top)."""
    positions = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    document: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": "model"}],
    }
    if len(faces) == 0:
        return _pack(document, b"")
    corner_colour = None
    if face_colours is not None:
        corner_colour = np.repeat(np.asarray(face_colours, dtype=np.uint8).reshape(-1, 4), 3, axis=0)
    elif colours is not None:
        corner_colour = np.asarray(colours, dtype=np.uint8).reshape(-1, 4)[faces.ravel()]
    normals = corner_normals(positions, faces, crease_deg)
    corner_uv = None if uvs is None else np.asarray(uvs, dtype=np.float32).reshape(-1, 2)[faces.ravel()]
    source, out_faces, out_normals, out_colours, out_uvs = _weld(faces, normals, corner_colour, corner_uv)
    out_positions = positions[source].astype(np.float32)

    blob = bytearray()
    views: list[dict[str, Any]] = []
    accessors: list[dict[str, Any]] = []

    def add(array: np.ndarray, component: int, kind: str, target: int, **extra: object) -> int:
        while len(blob) % 4:  # every view starts 4-aligned, as vertex attributes require
            blob.append(0)
        data = np.ascontiguousarray(array).tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), "target": target})
        blob.extend(data)
        accessors.append(
            {
                "bufferView": len(views) - 1,
                "componentType": component,
                "count": len(array),
                "type": kind,
                **extra,
            }
        )
        return len(accessors) - 1

    attributes = {
        "POSITION": add(
            out_positions,
            _FLOAT,
            "VEC3",
            _ARRAY_BUFFER,
            min=[float(v) for v in out_positions.min(axis=0)],
            max=[float(v) for v in out_positions.max(axis=0)],
        ),
        "NORMAL": add(out_normals.astype(np.float32), _FLOAT, "VEC3", _ARRAY_BUFFER),
    }
    if out_colours is not None:
        linear = _SRGB_TO_LINEAR_U16[out_colours[:, :3]]
        alpha = out_colours[:, 3:4].astype(np.uint16) * 257  # alpha is linear already: 255 → 65535
        attributes["COLOR_0"] = add(
            np.hstack([linear, alpha]), _USHORT, "VEC4", _ARRAY_BUFFER, normalized=True
        )
    if out_uvs is not None:
        attributes["TEXCOORD_0"] = add(out_uvs, _FLOAT, "VEC2", _ARRAY_BUFFER)
    # Unsigned short indices while they fit (65535 itself is reserved as the restart value).
    index_type = (np.uint16, _USHORT) if len(source) <= 65535 else (np.uint32, _UINT)
    indices = add(out_faces.ravel().astype(index_type[0]), index_type[1], "SCALAR", _ELEMENT_ARRAY_BUFFER)
    document["nodes"][0]["mesh"] = 0
    document["meshes"] = [
        {
            "name": "model",
            "primitives": [{"attributes": attributes, "indices": indices, "material": 0, "mode": _TRIANGLES}],
        }
    ]
    document["materials"] = [
        {
            "name": "print",
            "pbrMetallicRoughness": {
                "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
                "metallicFactor": 0.0,
                "roughnessFactor": ROUGHNESS,
            },
            "doubleSided": False,
        }
    ]
    if texture_png is not None and out_uvs is not None:
        while len(blob) % 4:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(texture_png)})
        blob.extend(texture_png)
        document["images"] = [{"bufferView": len(views) - 1, "mimeType": "image/png"}]
        document["samplers"] = [
            {"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _CLAMP, "wrapT": _CLAMP}
        ]
        document["textures"] = [{"sampler": 0, "source": 0}]
        document["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0, "texCoord": 0}
    document["accessors"] = accessors
    document["bufferViews"] = views
    document["buffers"] = [{"byteLength": len(blob)}]
    return _pack(document, bytes(blob))


def corner_normals(positions: np.ndarray, faces: np.ndarray, crease_deg: float = CREASE_DEG) -> np.ndarray:
    """One unit normal per face corner, (3m, 3) in `faces.ravel()` order: the average of the
    normals of the faces around the corner's vertex that lie within `crease_deg` of the corner's
    own face, each weighted by its angle at the vertex (so a wall quad split in two counts as
    much as an unsplit one; weighting by area would tilt such walls' normals by about 1°).

    Only correctly rounded operations (+, -, ×, ÷, √) and sums in a fixed order reach the
    result, so its bits cannot depend on the machine or on which vectorised path numpy takes:
    the angle comes from a polynomial, not from arccos, whose SIMD and scalar versions may
    round the last bit differently.
    """
    tri = positions[faces]
    cross = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # twice the area, along the normal
    length = _length(cross)
    face_normal = np.divide(cross, length[:, None], out=np.zeros_like(cross), where=length[:, None] > 0)
    corner_face = np.repeat(np.arange(len(faces)), 3)
    corner_vertex = faces.ravel()
    count = int(corner_vertex.max()) + 1
    corner_normal = face_normal[corner_face]
    weighted = corner_normal * _corner_angles(tri).ravel()[:, None]

    # Most vertices lie inside a smooth or flat patch: when every face around a vertex is within
    # half the crease angle of their mean, every pair is within the crease angle, so each of its
    # corners takes the whole sum. Only the rest (an extruded logo's rim: about 6 % of the sample
    # emblem's corners) goes through the pairwise comparison.
    vertex_sum = np.stack(
        [np.bincount(corner_vertex, weights=weighted[:, axis], minlength=count) for axis in range(3)], axis=1
    )
    vertex_length = _length(vertex_sum)
    mean = np.divide(
        vertex_sum, vertex_length[:, None], out=np.zeros_like(vertex_sum), where=vertex_length[:, None] > 0
    )
    near = _dot(corner_normal, mean[corner_vertex]) >= np.cos(np.radians(crease_deg / 2))
    rough_vertex = np.bincount(corner_vertex, weights=~near, minlength=count) > 0
    normals = vertex_sum[corner_vertex]
    rough = rough_vertex[corner_vertex]
    if rough.any():
        normals[rough] = _paired_sums(corner_vertex[rough], corner_normal[rough], weighted[rough], crease_deg)
    length = _length(normals)
    # A degenerate face has no normal of its own: its corners take the vertex's plain average.
    missing = length < 1e-300
    if missing.any():
        smooth = np.zeros((count, 3))
        np.add.at(smooth, corner_vertex, cross[corner_face])
        normals[missing] = smooth[corner_vertex[missing]]
        normals[missing & (_length(normals) < 1e-300)] = (0.0, 1.0, 0.0)
        length = _length(normals)
    result: np.ndarray = normals / length[:, None]
    return result


def _paired_sums(
    vertex: np.ndarray, normal: np.ndarray, weighted: np.ndarray, crease_deg: float
) -> np.ndarray:
    """For each corner, the sum of `weighted` over the corners of the same vertex whose face
    normal is within `crease_deg` of its own (itself included)."""
    # Corners grouped by vertex; every corner is compared with every corner of its group. The
    # work is done on corners in grouped order, so each pass gathers two arrays and no more.
    order = np.argsort(vertex, kind="stable")
    grouped = vertex[order]
    # float32 for the comparison: half the memory traffic of its ~6 pairs a corner; the
    # threshold test does not need more.
    unit = normal[order].astype(np.float32)
    weight = weighted[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    pairs_per = np.repeat(sizes, sizes)  # per grouped corner: its group's size
    group_start = np.repeat(starts, sizes)
    cosine = np.float32(np.cos(np.radians(crease_deg)))
    total = np.zeros((len(order), 3))
    bounds = np.r_[0, np.cumsum(pairs_per)]
    first = 0
    while first < len(order):
        # The block of grouped corners [first, last) whose pairs fit in one pass.
        last = max(first + 1, int(np.searchsorted(bounds, bounds[first] + _PAIR_BLOCK, side="right")) - 1)
        counts = pairs_per[first:last]
        mine = np.repeat(np.arange(last - first), counts)
        theirs = np.repeat(group_start[first:last], counts) + (
            np.arange(len(mine)) - np.repeat(bounds[first:last] - bounds[first], counts)
        )
        keep = _dot(unit[first:last][mine], unit[theirs]) >= cosine
        mine, theirs = mine[keep], theirs[keep]
        contribution = weight[theirs]
        for axis in range(3):  # bincount adds in index order: a fixed order
            total[first:last, axis] = np.bincount(mine, weights=contribution[:, axis], minlength=last - first)
        first = last
    sums = np.empty_like(total)
    sums[order] = total
    return sums


def _corner_angles(tri: np.ndarray) -> np.ndarray:
    """The interior angle at each corner of each triangle, (m, 3) radians, within 7e-5 (by
    Abramowitz & Stegun 4.4.45: arccos x ≈ √(1-x)·(a0 + a1·x + a2·x² + a3·x³) for 0 ≤ x ≤ 1)."""
    angles = np.empty(tri.shape[:2])
    for corner in range(3):
        u = tri[:, (corner + 1) % 3] - tri[:, corner]
        v = tri[:, (corner + 2) % 3] - tri[:, corner]
        norms = np.sqrt(_dot(u, u) * _dot(v, v))
        cosine = np.clip(np.divide(_dot(u, v), norms, out=np.zeros(len(u)), where=norms > 0), -1.0, 1.0)
        x = np.abs(cosine)
        half = np.sqrt(1.0 - x) * (1.5707288 + x * (-0.2121144 + x * (0.0742610 + x * -0.0187293)))
        angles[:, corner] = np.where(cosine >= 0, half, np.pi - half)
    return angles


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1],
            u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
            u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0],
        ],
        axis=1,
    )


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    result: np.ndarray = u[:, 0] * v[:, 0] + u[:, 1] * v[:, 1] + u[:, 2] * v[:, 2]
    return result


def _length(u: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.sqrt(_dot(u, u))
    return result


def _weld(
    faces: np.ndarray,
    normals: np.ndarray,
    corner_colour: np.ndarray | None,
    corner_uv: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Corners that agree on vertex, normal (float32 bits), colour and UV become one output vertex,
    numbered in order of first use. Returns each output vertex's source vertex, the faces over
    output vertices, and the output normals, colours and UVs."""
    corner_vertex = faces.ravel()
    normal32 = np.ascontiguousarray(normals, dtype=np.float32)
    fields = [normal32.view(np.uint8)]
    if corner_colour is not None:
        fields.append(np.ascontiguousarray(corner_colour, dtype=np.uint8))
    if corner_uv is not None:
        fields.append(np.ascontiguousarray(corner_uv, dtype=np.float32).view(np.uint8))
    attributes = np.hstack(fields)
    # Most corners match their vertex's first corner: they are that vertex. The others (split
    # at a crease or a colour edge) are told apart by their bytes, vertex included.
    order = np.argsort(corner_vertex, kind="stable")
    grouped = corner_vertex[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    reference = np.zeros(int(corner_vertex.max()) + 1, dtype=np.int64)
    reference[grouped[starts]] = order[starts]
    differs = np.flatnonzero(np.any(attributes != attributes[reference[corner_vertex]], axis=1))
    variant = np.zeros(len(corner_vertex), dtype=np.int64)
    if len(differs):
        key = np.hstack(
            [corner_vertex[differs].astype("<i8").view(np.uint8).reshape(-1, 8), attributes[differs]]
        )
        key = np.ascontiguousarray(key)
        _, kinds = np.unique(key.view(np.dtype((np.void, key.shape[1]))).ravel(), return_inverse=True)
        variant[differs] = kinds.ravel() + 1
    _, first, inverse = np.unique(
        corner_vertex * (int(variant.max()) + 1) + variant, return_index=True, return_inverse=True
    )
    # np.unique numbers keys in sorted order; renumber them by first use, so nearby faces share
    # nearby vertices (what a GPU's vertex cache likes) and the numbering reads naturally.
    rank = np.empty(len(first), dtype=np.int64)
    by_use = np.argsort(first, kind="stable")
    rank[by_use] = np.arange(len(first))
    corners = first[by_use]
    out_faces = rank[inverse.ravel()].reshape(-1, 3)
    colours = None if corner_colour is None else corner_colour[corners]
    uvs = None if corner_uv is None else corner_uv[corners]
    return corner_vertex[corners], out_faces, normals[corners], colours, uvs


def _pack(document: dict[str, Any], blob: bytes) -> bytes:
    """The GLB container: 12-byte header, a JSON chunk padded with spaces, a BIN chunk padded with zeros."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), _CHUNK_JSON) + text
    if blob:
        blob += b"\0" * (-len(blob) % 4)
        chunks += struct.pack("<II", len(blob), _CHUNK_BIN) + blob
    return struct.pack("<III", _GLB_MAGIC, _GLB_VERSION, 12 + len(chunks)) + chunks


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON document and BIN chunk of a GLB (what a viewer parses first)."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != 2 or length != len(data):
        raise ValueError("not a GLB 2.0 file")
    json_length, kind = struct.unpack_from("<II", data, 12)
    if kind != _CHUNK_JSON:
        raise ValueError("GLB's first chunk is not JSON")
    document = json.loads(data[20 : 20 + json_length])
    blob = b""
    at = 20 + json_length
    if at < len(data):
        bin_length, kind = struct.unpack_from("<II", data, at)
        if kind == _CHUNK_BIN:
            blob = data[at + 8 : at + 8 + bin_length]
    return document, blob


_COMPONENTS = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_accessor(document: dict[str, Any], blob: bytes, index: int) -> np.ndarray:
    """An accessor's values as a viewer reads them: strided views honoured, normalized
    integers mapped to 0..1 (signed: -1..1) by glTF 2.0 §3.11's c / (2^bits - 1) rule."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = np.dtype(_COMPONENTS[accessor["componentType"]]).newbyteorder("<")
    width = _WIDTH[accessor["type"]]
    count = accessor["count"]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    stride = view.get("byteStride", dtype.itemsize * width)
    raw = np.frombuffer(
        blob, dtype=np.uint8, count=(count - 1) * stride + dtype.itemsize * width, offset=start
    )
    rows = np.lib.stride_tricks.as_strided(raw, shape=(count, dtype.itemsize * width), strides=(stride, 1))
    values = np.ascontiguousarray(rows).view(dtype).reshape(count, width)
    if accessor.get("normalized"):
        # glTF allows `normalized` only on integer component types, so the dtype is an integer one.
        integer = cast("np.dtype[np.integer[Any]]", dtype)
        result: np.ndarray = np.maximum(values.astype(np.float64) / float(np.iinfo(integer).max), -1.0)
        return result
    return values
