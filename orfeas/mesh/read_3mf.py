"""`read_3mf`: a 3MF file's triangles and the colour each corner shows, read as a slicer does.

Standard library only, so Blender's bundled Python (no numpy) can use it too: Blender 3.4 has
no 3MF importer, and scripts/render_formats.py renders the 3MF through this reader.

Colours follow the 3MF core and materials specs: a triangle's `pid`/`p1..p3` (or its object's
`pid`/`pindex`) point into an `m:colorgroup` (one `m:color` per index) or a `basematerials`
group (its `displaycolor`s). Components and build-item transforms are applied, so a model of
several parts (one per filament) comes back as one triangle soup in build coordinates.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field

_CORE = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"
_MATERIAL = "{http://schemas.microsoft.com/3dmanufacturing/material/2015/02}"
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)

Colour = tuple[int, int, int, int]


@dataclass
class Model3MF:
    """Triangles in build coordinates (millimetres when unit is millimeter) with corner colours."""

    unit: str
    vertices: list[tuple[float, float, float]] = field(default_factory=list)
    triangles: list[tuple[int, int, int]] = field(default_factory=list)
    # One per triangle: the colours of its three corners, or None where it has none.
    corner_colours: list[tuple[Colour, Colour, Colour] | None] = field(default_factory=list)
    objects: int = 0


def _colour(text: str) -> Colour:
    """#RRGGBB or #RRGGBBAA → (r, g, b, a)."""
    text = text.strip().lstrip("#")
    alpha = int(text[6:8], 16) if len(text) >= 8 else 255
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16), alpha


def _matrix(text: str | None) -> tuple[float, ...]:
    if not text:
        return _IDENTITY
    values = tuple(float(v) for v in text.split())
    return values if len(values) == 12 else _IDENTITY


def _compose(outer: tuple[float, ...], inner: tuple[float, ...]) -> tuple[float, ...]:
    """The 3MF row-vector transform `inner` then `outer` (both 4×3, rows m00 m01 m02 … m30 m31 m32)."""
    a = [list(inner[i * 3 : i * 3 + 3]) for i in range(4)]
    b = [list(outer[i * 3 : i * 3 + 3]) for i in range(4)]
    out = []
    for row in range(4):
        for col in range(3):
            value = sum(a[row][k] * b[k][col] for k in range(3))
            if row == 3:
                value += b[3][col]
            out.append(value)
    return tuple(out)


def _apply(m: tuple[float, ...], x: float, y: float, z: float) -> tuple[float, float, float]:
    return (
        x * m[0] + y * m[3] + z * m[6] + m[9],
        x * m[1] + y * m[4] + z * m[7] + m[10],
        x * m[2] + y * m[5] + z * m[8] + m[11],
    )


def read_3mf(data: bytes) -> Model3MF:
    """The build's triangles and corner colours of a 3MF package (its root model part)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        rels = ET.fromstring(archive.read("_rels/.rels"))
        target = "3D/3dmodel.model"
        for rel in rels:
            if rel.get("Type", "").endswith("/3dmodel"):
                target = rel.get("Target", target).lstrip("/")
        root = ET.fromstring(archive.read(target))
    model = Model3MF(unit=root.get("unit", "millimeter"))
    resources = root.find(f"{_CORE}resources")
    if resources is None:
        return model
    groups: dict[str, list[Colour]] = {}
    for group in resources.iter(f"{_MATERIAL}colorgroup"):
        groups[group.get("id", "")] = [
            _colour(c.get("color", "#000000")) for c in group.iter(f"{_MATERIAL}color")
        ]
    for group in resources.iter(f"{_CORE}basematerials"):
        groups[group.get("id", "")] = [
            _colour(b.get("displaycolor", "#000000")) for b in group.iter(f"{_CORE}base")
        ]
    objects = {obj.get("id", ""): obj for obj in resources.iter(f"{_CORE}object")}

    def emit(obj: ET.Element, transform: tuple[float, ...]) -> None:
        mesh = obj.find(f"{_CORE}mesh")
        if mesh is not None:
            model.objects += 1
            base = len(model.vertices)
            for v in mesh.iter(f"{_CORE}vertex"):
                model.vertices.append(
                    _apply(transform, float(v.get("x", 0)), float(v.get("y", 0)), float(v.get("z", 0)))
                )
            object_pid, object_index = obj.get("pid"), obj.get("pindex")
            for t in mesh.iter(f"{_CORE}triangle"):
                model.triangles.append(
                    (base + int(t.get("v1", 0)), base + int(t.get("v2", 0)), base + int(t.get("v3", 0)))
                )
                pid = t.get("pid", object_pid)
                first = t.get("p1", None if t.get("pid") else object_index)
                palette = groups.get(pid or "")
                if palette is None or first is None:
                    model.corner_colours.append(None)
                    continue
                # p2/p3 default to p1: the whole triangle in one colour.
                picks = (first, t.get("p2", first), t.get("p3", first))
                model.corner_colours.append(tuple(palette[int(p)] for p in picks))  # type: ignore[arg-type]
        components = obj.find(f"{_CORE}components")
        if components is not None:
            for component in components.iter(f"{_CORE}component"):
                child = objects.get(component.get("objectid", ""))
                if child is not None:
                    emit(child, _compose(transform, _matrix(component.get("transform"))))

    build = root.find(f"{_CORE}build")
    for item in [] if build is None else build.iter(f"{_CORE}item"):
        obj = objects.get(item.get("objectid", ""))
        if obj is not None:
            emit(obj, _matrix(item.get("transform")))
    return model
