"""Every benchmark still runs: each one at its smallest size, checked for the figures it reports.

These measure nothing (the sizes are far too small to mean anything); they keep the benchmark
scripts from breaking unnoticed. Every server a benchmark starts is its own to stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _bench(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, f"bench/{name}.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_decimate_reports_speed_and_distances() -> None:
    """bench/decimate.py --small: both meshes, both decimators, the budget met, distances given."""
    report = _last_json(_bench("decimate", "--small"))
    assert [c["mesh"] for c in report["cases"]] == ["sphere", "relief"]
    for case in report["cases"]:
        assert case["faces_ours"] <= 2_000
        assert case["speedup"] > 0
        assert case["hausdorff_ours"] > 0
        assert case["ours_watertight"]


def test_pipeline_reports_every_stage() -> None:
    """bench/pipeline.py: the logo and the photo through every stage, with the share outside them."""
    report = _last_json(_bench("pipeline", "--repeat", "1"))
    assert report["logo"]["backend"] == "extrude"
    assert report["photo"]["backend"] == "relief"
    for case in report.values():
        assert set(case["stages_s"]) == {"input", "background", "shape", "texture", "export"}
        assert 0 <= case["outside_stages_share"] < 1


def test_handler_reports_overhead_and_imports() -> None:
    """bench/handler.py: a job through the handler against moto's server, and the import cost."""
    out = _bench("handler", "--jobs", "1", "--size", "256", "--import-runs", "1")
    assert "handler overhead" in out
    assert "uploads left after the export" in out
    assert "import handler" in out


def test_callbacks_reports_ingestion_and_port_open() -> None:
    """bench/callbacks.py: durable ingestion against bare aiohttp, and the port-open ratio."""
    out = _bench("callbacks", "--seconds", "0.3", "--connections", "4", "--starts", "1")
    assert "throughput ratio ours/bare:" in out
    assert "port-open from process start" in out


def test_store_reports_every_commit_mode(tmp_path: Path) -> None:
    """bench/store.py: group commit, one commit per write, aiosqlite and record+apply."""
    out = _bench("store", "--seconds", "0.2", "--writers", "4", "--dir", str(tmp_path))
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"single", "group", "aiosqlite", "group+apply"} <= rows


def test_gpu_says_why_it_measures_nothing_without_cuda() -> None:
    """bench/gpu.py without a CUDA device exits 0 and says that nothing was measured."""
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the real benchmark is run on purpose, not in the suite")
    assert "nothing measured" in _bench("gpu")


@pytest.mark.slow  # about 100 s on one core: the tiny models' shape, paint and a worker job
def test_gpu_runs_on_the_cpu_with_the_tiny_models() -> None:
    """bench/gpu.py --device cpu: our shape stage, paint and a full worker job, each timed with a peak RSS."""
    pytest.importorskip("torch")
    report = _last_json(_bench("gpu", "--device", "cpu", "--skip-baseline", "--quality", "1"))
    assert report["device"] == "cpu"
    shape, paint, worker = report["results"]
    assert shape["steps"] == 10
    assert shape["total_s"] > 0
    assert paint["uv_texture"] is True
    assert set(worker["stages_s"]) >= {"input", "background", "shape", "texture", "export"}
    assert worker["meshes"] == ["glb", "mtl", "obj", "png"]
    for row in (shape, paint, worker):
        assert row["peak_rss_mb"] >= row["rss_after_imports_mb"] > 0


def test_quality_reports_colour_figures() -> None:
    """bench/quality.py --samples icon,logo: off-colour share, top heights and faces for each, and
    the logo's tool changes when prusa-slicer is installed."""
    report = _last_json(_bench("quality", "--samples", "icon,logo"))
    after = report["colour"]["after"]
    assert set(after) == {"icon", "logo"}
    assert 0.0 <= after["icon"]["off_colour"] <= 1.0
    assert after["icon"]["top_heights"] >= 1
    assert after["logo"]["faces"] > 0
    assert "tool_changes" in after["logo"]


def test_quality_cutout_reports_iou_and_the_ball() -> None:
    """bench/quality_cutout.py: IoU before and after for every photo sample, and the ball's extents."""
    report = _last_json(_bench("quality_cutout"))
    assert set(report["pictures"]) >= {"ball_on_gradient", "object_on_vignette", "object_on_texture"}
    for row in report["pictures"].values():
        assert 0.0 <= row["iou_before"] <= 1.0
        assert row["iou_after"] >= row["iou_before"] - 1e-3
    assert report["ball"]["within_6pct"] is True


def test_texture_reports_unwrap_and_bake_per_size() -> None:
    """bench/texture.py --small: full unwrap, decimate + unwrap and bake each timed with a peak RSS."""
    pytest.importorskip("xatlas")
    report = _last_json(_bench("texture", "--small"))
    (row,) = report["rows"]
    for step in ("unwrap_full", "decimate_unwrap", "bake"):
        assert row[step]["seconds"] > 0
        assert row[step]["peak_rss_mb"] > 0
        assert row[step]["faces"] > 2_000
    assert 0 < row["bake"]["rss_before_bake_mb"] <= row["bake"]["peak_rss_mb"]
    assert row["bake"]["bake_faces"] <= 2_000
