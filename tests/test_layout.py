"""The package boundaries, read from every import statement (ast): the pipeline library, the
contract, the worker and the callback server each import only what their role allows."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"orfeas", "orfeas_contract", "orfeas_worker", "callback_server", "handler"}


def _imports(path: Path) -> set[str]:
    """Every module an import statement of `path` names (function-level imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # `from orfeas import webhooks` names a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_imports(package: str) -> dict[str, set[str]]:
    paths = [ROOT / f"{package}.py"] if package == "handler" else sorted((ROOT / package).rglob("*.py"))
    return {str(p.relative_to(ROOT)): _imports(p) for p in paths}


def _top(name: str) -> str:
    return name.split(".")[0]


def _offenders(package: str, allowed: set[str]) -> dict[str, list[str]]:
    bad = {}
    for path, names in _package_imports(package).items():
        wrong = sorted(n for n in names if _top(n) in LOCAL and _top(n) not in allowed)
        if wrong:
            bad[path] = wrong
    return bad


def test_the_pipeline_library_imports_neither_the_worker_nor_runpod_nor_the_server():
    """No module under orfeas/ imports orfeas_worker, handler, callback_server or runpod."""
    assert _offenders("orfeas", {"orfeas", "orfeas_contract"}) == {}
    runpod = {p: n for p, n in _package_imports("orfeas").items() if any(_top(x) == "runpod" for x in n)}
    assert runpod == {}


def test_the_callback_server_imports_only_the_contract_from_the_pipeline_side():
    """callback_server/ imports orfeas_contract and itself, never orfeas, orfeas_worker or runpod."""
    assert _offenders("callback_server", {"callback_server", "orfeas_contract"}) == {}
    runpod = {
        p: n for p, n in _package_imports("callback_server").items() if any(_top(x) == "runpod" for x in n)
    }
    assert runpod == {}


def test_the_contract_imports_only_the_standard_library_and_pydantic():
    """orfeas_contract/ imports itself, the standard library, pydantic and typing_extensions only."""
    allowed = set(sys.stdlib_module_names) | {
        "orfeas_contract",
        "pydantic",
        "typing_extensions",
        "__future__",
    }
    bad = {
        p: sorted(n for n in names if _top(n) not in allowed)
        for p, names in _package_imports("orfeas_contract").items()
    }
    assert {p: n for p, n in bad.items() if n} == {}


def test_runpod_is_imported_by_the_entry_point_only():
    """Only handler.py imports runpod; the worker package takes RunPod's calls as arguments."""
    users = {
        path
        for package in ("orfeas", "orfeas_contract", "orfeas_worker", "callback_server", "handler")
        for path, names in _package_imports(package).items()
        if any(_top(n) == "runpod" for n in names)
    }
    assert users == {"handler.py"}


@pytest.mark.parametrize("package", ["orfeas", "orfeas_contract", "orfeas_worker"])
def test_the_worker_image_copies_every_package_the_handler_needs(package):
    """The handler imports the three packages, and the Dockerfile copies each of them."""
    reached = {_top(n) for names in _package_imports("handler").values() for n in names}
    reached |= {_top(n) for names in _package_imports("orfeas_worker").values() for n in names}
    assert package in reached
    assert f"COPY {package}/ {package}/" in (ROOT / "Dockerfile").read_text()
