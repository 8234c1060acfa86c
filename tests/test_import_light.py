"""Heavy modules stay out of the light entry points."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "hy3dgen", "trimesh", "scipy")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_orfeas_loads_nothing_heavy():
    """`import orfeas` loads neither torch nor the mesh or ML stacks."""
    assert not (set(HEAVY) & _loaded_after("import orfeas"))


def test_pipeline_module_loads_no_ml_stack():
    """Importing the pipeline and the CLI does not import torch, diffusers or hy3dgen."""
    loaded = _loaded_after("import orfeas.pipeline, orfeas.cli")
    assert not ({"torch", "diffusers", "transformers", "hy3dgen"} & loaded)


def test_cli_help_is_fast_and_light():
    """`python -m orfeas --help` answers without importing the ML stack."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orfeas", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "generate" in result.stdout
    assert "torch" not in result.stderr.split()


def test_callback_server_loads_no_pipeline_stack():
    """The callback server's app imports neither pydantic (the request schema) nor numpy or Pillow."""
    loaded = _loaded_after("import callback_server.app")
    assert not ({"pydantic", "numpy", "PIL", *HEAVY} & loaded)


def test_package_names_resolve_on_first_use():
    """`orfeas.parse_request` and the other exported names resolve lazily to their modules' objects."""
    import orfeas
    from orfeas.request import parse_request
    from orfeas_contract.status import JobStatus

    assert orfeas.parse_request is parse_request
    assert orfeas.JobStatus is JobStatus
    assert set(orfeas.__all__) >= {"InvalidInput", "JobRequest", "OrfeasError", "Settings"}
    for name in orfeas.__all__:
        assert getattr(orfeas, name) is not None
    with pytest.raises(AttributeError):
        _ = orfeas.no_such_name
