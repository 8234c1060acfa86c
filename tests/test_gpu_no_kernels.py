"""Nothing compiled is needed: no import of hy3dgen's CUDA extensions anywhere, no kernel built by
the image, and the paint backend refuses to build when one of its native wheels is missing."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import dockerfile
import pytest

from orfeas.errors import BackendUnavailable

ROOT = Path(__file__).resolve().parents[1]
# hy3dgen's compiled pieces (texgen's rasterizer and inpainting, FlashVDM's optional DMC) and the
# ways of compiling one at run time.
COMPILED = ("custom_rasterizer", "mesh_processor", "hy3dgen.texgen.differentiable_renderer", "diso")
BUILDERS = ("torch.utils.cpp_extension",)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_source_imports_a_compiled_extension_or_builds_one():
    """Every module of the worker, the library and the benchmarks imports none of hy3dgen's
    compiled extensions and no run-time extension builder."""
    files = [ROOT / "handler.py"]
    for folder in ("orfeas", "orfeas_worker", "orfeas_contract", "bench"):
        files += sorted((ROOT / folder).rglob("*.py"))
    offenders = {
        str(f.relative_to(ROOT)): sorted(n for n in _imports(f) if n.startswith(COMPILED + BUILDERS))
        for f in files
    }
    assert len(files) > 50
    assert {f: names for f, names in offenders.items() if names} == {}


def test_the_image_compiles_no_kernel():
    """No RUN step of the Dockerfile calls a compiler or builds an extension from source."""
    runs = [" ".join(c.value) for c in dockerfile.parse_file(str(ROOT / "Dockerfile")) if c.cmd == "RUN"]
    assert runs
    for run in runs:
        for marker in (
            "nvcc",
            "setup.py",
            "build_ext",
            "cpp_extension",
            "git clone",
            "--no-binary",
            "pip install -e",
        ):
            assert marker not in run, run


def test_paint_refuses_to_build_without_its_native_wheels(monkeypatch):
    """With xatlas missing, the paint backend is backend_unavailable naming it, before any model loads."""
    pytest.importorskip("torch")
    from orfeas.gpu import hunyuan_paint
    from tests.gpu_support import cpu_settings

    real = importlib.util.find_spec
    monkeypatch.setattr(
        hunyuan_paint.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "xatlas" else real(name, *a),
    )
    with pytest.raises(BackendUnavailable) as info:
        hunyuan_paint.HunyuanPaintTexture(cpu_settings(model_dir=Path("/nonexistent")))
    assert "xatlas" in info.value.message
