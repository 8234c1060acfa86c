"""Multi-colour 3MF: one part per colour with its extruder, and PrusaSlicer prints it in colour."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import trimesh

from orfeas.mesh.export import export_mesh
from orfeas.mesh.finish import finish_mesh
from orfeas.request import JobRequest
from orfeas.samples import judge, logos
from orfeas.settings import Settings
from orfeas.shape.extrude import ExtrudeBackend
from orfeas.texture.vertex_colors import VertexColorTexture
from tests.shape_support import cutout_from, make_ctx

CORE = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"


def _finished(sample: logos.Sample, size_mm: float = 100.0) -> trimesh.Trimesh:
    rgba = np.asarray(sample.image.convert("RGBA"))
    cutout = cutout_from(sample.labels >= 0, rgba[..., :3], "alpha")
    shape = ExtrudeBackend(Settings()).generate(cutout, JobRequest(image="x"), make_ctx()[0])
    mesh = VertexColorTexture(Settings()).apply(shape, cutout, make_ctx("texture")[0])
    ctx, _ = make_ctx("export")
    return finish_mesh(
        mesh, stands=False, face_budget=20_000, dimensions=None, default_size_mm=size_mm, ctx=ctx
    )


def _parts(data: bytes) -> tuple[ET.Element, ET.Element]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    model = ET.fromstring(archive.read("3D/3dmodel.model"))
    config = ET.fromstring(archive.read("Metadata/Slic3r_PE_model.config"))
    return model, config


@pytest.mark.parametrize(("name", "count"), [("logo", 2), ("icon", 3)])
def test_3mf_has_one_part_per_colour_with_its_extruder(name: str, count: int) -> None:
    """One object whose triangles run part by part, each part a base material in its colour and a
    PrusaSlicer volume with extruders 1..N covering its triangle range exactly."""
    mesh = _finished(logos.ALL[name]())
    model, config = _parts(export_mesh(mesh, "3mf").data)
    bases = model.findall(f"{CORE}resources/{CORE}basematerials/{CORE}base")
    assert len(bases) == count
    objects = model.findall(f"{CORE}resources/{CORE}object")
    assert len(objects) == 1
    triangles = objects[0].findall(f"{CORE}mesh/{CORE}triangles/{CORE}triangle")
    assert len(triangles) == len(mesh.faces)
    material = np.array([int(t.get("p1")) for t in triangles])
    volumes = config.findall("object/volume")
    assert [int(v.find("metadata[@key='extruder']").get("value")) for v in volumes] == list(
        range(1, count + 1)
    )
    colours = np.asarray(mesh.visual.vertex_colors)
    vertex_ids = np.array([[int(t.get(k)) for k in ("v1", "v2", "v3")] for t in triangles])
    for i, volume in enumerate(volumes):
        first, last = int(volume.get("firstid")), int(volume.get("lastid"))
        assert np.all(material[first : last + 1] == i)
        shown = bases[i].get("displaycolor")
        rgb = colours[vertex_ids[first : last + 1]].reshape(-1, 4)[:, :3]
        assert np.all(rgb == rgb[0])
        assert shown == "#{:02X}{:02X}{:02X}FF".format(*rgb[0].tolist())
    assert int(volumes[-1].get("lastid")) == len(triangles) - 1


def test_multi_part_3mf_is_deterministic() -> None:
    """The same coloured mesh gives the same 3MF bytes."""
    mesh = _finished(logos.logo())
    assert export_mesh(mesh, "3mf").data == export_mesh(mesh.copy(), "3mf").data


def _blended(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh as it was written before colour parts: seam vertices merged, colours per vertex."""
    merged = trimesh.Trimesh(
        vertices=mesh.vertices, faces=mesh.faces, vertex_colors=mesh.visual.vertex_colors
    )
    merged.merge_vertices()
    return merged


@pytest.mark.skipif(not judge.slicer_available(), reason="prusa-slicer is not installed")
@pytest.mark.timeout(300)
def test_prusaslicer_changes_tools_on_a_two_colour_logo() -> None:
    """PrusaSlicer's CLI with two extruders slices the two-colour logo's 3MF with tool changes; the
    same logo written as one part with per-vertex colours (the old 3MF) makes none."""
    mesh = _finished(logos.logo(), size_mm=30.0)
    changes = judge.tool_changes(export_mesh(mesh, "3mf").data)
    assert changes is not None
    assert changes > 0
    assert judge.tool_changes(export_mesh(_blended(mesh), "3mf").data) == 0


def test_colour_solids_repainted_still_give_one_closed_stl() -> None:
    """Colour solids whose colours were replaced by per-vertex colours (another texture backend)
    are no longer colour parts, yet the STL is still their union: one closed solid."""
    mesh = _finished(logos.logo())
    rng = np.random.default_rng(3)
    repainted = trimesh.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        vertex_colors=rng.integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8),
        process=False,
    )
    stl = trimesh.load(io.BytesIO(export_mesh(repainted, "stl").data), file_type="stl")
    assert stl.is_watertight
    assert len(trimesh.graph.connected_components(stl.face_adjacency)) == 1
    assert stl.volume == pytest.approx(
        trimesh.load(io.BytesIO(export_mesh(mesh, "stl").data), file_type="stl").volume, rel=1e-6
    )
