"""Colours a user sees, through the whole pipeline: the files read back and judged against the truth."""

from __future__ import annotations

import base64
import io

import pytest
import trimesh

from orfeas.pipeline import Pipeline
from orfeas.request import parse_request
from orfeas.samples import judge, logos
from orfeas.settings import Settings


def _run(sample: logos.Sample, **fields):
    request = parse_request(
        {"image": base64.b64encode(sample.png()).decode(), "formats": ["ply", "stl"], **fields}
    )
    result = Pipeline(Settings()).run(request, job_id=sample.name)
    ply = trimesh.load(io.BytesIO(result.artifacts["ply"].data), file_type="ply", process=False)
    stl = trimesh.load(io.BytesIO(result.artifacts["stl"].data), file_type="stl")
    return result, ply, stl


@pytest.mark.parametrize("name", ["thin_text", "icon", "logo_on_white"])
def test_off_colour_top_area_is_at_most_3_percent(name: str) -> None:
    """Thin anti-aliased text on white, an anti-aliased icon and a logo on white come out with at
    most 3 % of the top surface off their true colours (ΔE > 10), watertight."""
    sample = logos.ALL[name]()
    result, ply, _ = _run(sample)
    assert result.backend == "extrude"
    assert result.mesh.watertight
    assert judge.off_colour_share(ply, sample) <= 0.03


def test_a_colour_only_design_shows_in_the_stl() -> None:
    """The smiley's eyes and mouth are only colour, yet its STL has two top heights; with
    color_relief off it is one flat slab."""
    _, _, stl = _run(logos.smiley())
    assert len(judge.top_heights(stl)) == 2
    _, _, flat = _run(logos.smiley(), color_relief=False)
    assert len(judge.top_heights(flat)) == 1


def test_a_two_colour_banner_prints_as_one_coloured_body() -> None:
    """The two-colour banner's loose letters stand on a plate in the base colour: the STL is one
    closed body, the coloured mesh keeps its colours crisp (at most 3 % off-colour on top)."""
    sample = logos.banner()
    result, ply, stl = _run(sample)
    assert result.extra["shape"]["backing_plate"] is not None
    assert stl.is_watertight
    assert len(stl.split(only_watertight=False)) == 1
    assert judge.off_colour_share(ply, sample) <= 0.03
