"""A Hunyuan3D job run off the main thread (as the worker and the stage threads do) exits cleanly."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orfeas.registry import import_native_extensions
from tests.inputs_support import ROOT

pytest.importorskip("torch")
pytest.importorskip("hy3dgen")
pytest.importorskip("pymeshlab")

# The child builds the pipeline on its main thread, as handler.py does at import, then runs the
# job on another thread, as handler.py's asyncio.to_thread does; hy3dgen (and so pymeshlab) is
# first imported inside the shape stage's thread. The models are written by another process so
# that writing them does not import hy3dgen on the child's main thread first.
CHILD = """
import base64, sys, threading
from pathlib import Path
from orfeas.pipeline import Pipeline
from orfeas.request import parse_request
from orfeas.settings import Settings

settings = Settings(
    device="cpu", dtype="auto", hf_home="/nonexistent-hf-home", model_dir=Path(sys.argv[1]),
    background_backend="classic", texture_backend="vertex",
)
pipeline = Pipeline(settings)
assert "hy3dgen" not in sys.modules
from orfeas.gpu import hunyuan_shape
hunyuan_shape.shape_params = lambda quality: hunyuan_shape.ShapeParams(2, 16, 5.0)
picture = base64.b64encode(Path(sys.argv[2]).read_bytes()).decode("ascii")
request = parse_request(
    {"image": picture, "backend": "hunyuan", "formats": ["stl"], "texture": False, "seed": 0}
)
results = []
job = threading.Thread(target=lambda: results.append(pipeline.run(request, job_id="exit")))
job.start()
job.join()
print("faces", results[0].mesh.faces)
"""


@pytest.fixture(scope="module")
def hunyuan_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hunyuan")
    code = (
        "import sys, pathlib; from orfeas.gpu.tiny_models import write_tiny_hunyuan; "
        "write_tiny_hunyuan(pathlib.Path(sys.argv[1]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(root)], check=True, capture_output=True, timeout=180, cwd=ROOT
    )
    return root


@pytest.mark.slow  # writing the models and running the job take about 20 s on one core
def test_a_hunyuan_job_in_a_thread_exits_with_status_zero(hunyuan_dir):
    """The process that ran a Hunyuan3D job on a thread exits with 0, not an abort at exit (134)."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(hunyuan_dir), str(ROOT / "orfeas" / "samples" / "emblem.png")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert int(child.stdout.split()[-1]) > 0


def test_the_native_extensions_load_on_the_main_thread_without_the_ml_stack():
    """On the main thread pymeshlab is imported alone: torch, diffusers and hy3dgen stay unloaded."""
    code = (
        "import sys; from orfeas.registry import import_native_extensions; "
        "print(' '.join(import_native_extensions())); print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, cwd=ROOT
    )
    loaded, modules = out.stdout.splitlines()
    assert loaded.split() == ["pymeshlab"]
    assert not ({"torch", "diffusers", "hy3dgen"} & set(modules.split()))


def test_the_native_extensions_are_not_imported_off_the_main_thread():
    """Called from another thread the import is skipped, since importing there is what it guards against."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(import_native_extensions()))
    thread.start()
    thread.join()
    assert seen == [[]]
