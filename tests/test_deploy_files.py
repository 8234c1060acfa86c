"""The deploy files parse, point at real files, and build the image the worker needs.

No Docker engine runs here, so the Dockerfile is checked as parsed by Docker's own parser (the
`dockerfile` package wraps buildkit's): what it installs, from where, as whom, and what it runs.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.metadata
import json
import re
import shlex
import tomllib
from pathlib import Path

import dockerfile
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from orfeas import settings as settings_module
from orfeas.settings import Settings
from orfeas_worker.job_input import parse_worker_input

ROOT = Path(__file__).resolve().parent.parent
# requirements-dev.txt holds the test and lint tools: never in the image.
NOT_IN_IMAGE = {"requirements-dev.txt"}
PUBLIC = lambda host, port: ["93.184.216.34"]  # noqa: E731


@pytest.fixture(scope="module")
def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def _runs(commands: list[dockerfile.Command]) -> list[str]:
    return [" ".join(c.value) for c in commands if c.cmd == "RUN"]


def _args(commands: list[dockerfile.Command]) -> dict[str, str]:
    args = {}
    for c in commands:
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            args[name] = default.strip('"')
    return args


def _pip_installs(commands: list[dockerfile.Command]) -> list[list[str]]:
    """Each `pip install ...` in a RUN, as its argument list."""
    found = []
    for run in _runs(commands):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in {"&&", "||", ";", "then", "do", "|"}:
                if words[:2] == ["pip", "install"]:
                    found.append(words[2:])
                words = []
            else:
                words.append(token)
    return found


def test_the_base_is_cuda_12_8_or_later(commands):
    """Blackwell (RTX 5090, sm_120) needs CUDA 12.8+: the base image says so."""
    (base,) = [c.value[0] for c in commands if c.cmd == "FROM"]
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base)
    assert match, base
    assert (int(match[1]), int(match[2])) >= (12, 8)


def test_torch_is_the_pinned_cu128_build(commands):
    """torch and torchvision come pinned from the cu128 index, before any requirement file."""
    args = _args(commands)
    installs = _pip_installs(commands)
    torch_install = installs[0]
    assert "--index-url" in torch_install
    assert torch_install[torch_install.index("--index-url") + 1] == "${TORCH_INDEX_URL}"
    assert args["TORCH_INDEX_URL"].endswith("/whl/cu128")
    assert "torch==${TORCH_VERSION}" in torch_install
    assert "torchvision==${TORCHVISION_VERSION}" in torch_install
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCHVISION_VERSION"])


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            package, _, version = line.partition("==")
            pins[package.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_the_image_torch_satisfies_the_pinned_gpu_packages(commands):
    """TORCH_VERSION meets the torch floor the pinned diffusers/transformers/accelerate declare, and
    TORCHVISION_VERSION is its partner release (torch 2.N pairs with torchvision 0.(N+15))."""
    args = _args(commands)
    torch_version = Version(args["TORCH_VERSION"])
    vision = Version(args["TORCHVISION_VERSION"])
    assert (vision.major, vision.minor) == (0, torch_version.minor + 15), (torch_version, vision)
    pins = _pins("requirements-gpu.txt")
    checked = []
    for package in ("diffusers", "transformers", "accelerate", "safetensors"):
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != pins.get(package):
            continue  # the metadata here is not the pinned release's
        for line in importlib.metadata.requires(package) or []:
            req = Requirement(line)
            wanted = req.marker is None or req.marker.evaluate({"extra": "torch"})
            if req.name == "torch" and wanted:
                assert req.specifier.contains(torch_version), f"{package} {installed} needs {req}"
                checked.append(package)
    if not checked:
        pytest.skip("the pinned GPU packages are not installed here")


def test_every_runtime_requirement_file_is_copied_and_installed(commands):
    """Each requirements*.txt of the repo but the dev one is copied and installed (-nodeps with --no-deps)."""
    files = sorted(p.name for p in ROOT.glob("requirements*.txt") if p.name not in NOT_IN_IMAGE)
    assert "requirements.txt" in files
    copied = [src for c in commands if c.cmd == "COPY" for src in c.value[:-1]]
    installs = _pip_installs(commands)
    for name in files:
        assert any(fnmatch.fnmatch(name, src) for src in copied), f"{name} is not copied"
        install = next((i for i in installs if name in i), None)
        assert install is not None, f"{name} is not installed"
        assert install[install.index(name) - 1] == "-r"
        assert ("--no-deps" in install) == name.endswith("-nodeps.txt")
    # The optional no-deps file is referenced even before it exists, so adding it needs no edit here.
    assert any("requirements-gpu-nodeps.txt" in i for i in installs)


def test_xformers_is_never_installed():
    """Neither the Dockerfile's pip commands nor any requirement file name xformers; the build refuses it."""
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if "pip install" in line:
            assert "xformers" not in line
    assert "! pip show xformers" in text
    for req in ROOT.glob("requirements*.txt"):
        names = [re.split(r"[=<>\[; ]", line.strip())[0].lower() for line in req.read_text().splitlines()]
        assert "xformers" not in names, req.name


def test_it_runs_the_handler_as_a_non_root_user(commands):
    """CMD is `python -u handler.py`, the last USER is not root, and the copied code exists."""
    (cmd,) = [c for c in commands if c.cmd == "CMD"]
    assert cmd.json
    assert list(cmd.value) == ["python", "-u", "handler.py"]
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    for c in commands:
        if c.cmd == "COPY":
            for src in c.value[:-1]:
                if not any(ch in src for ch in "*?["):
                    assert (ROOT / src).exists(), src


def test_models_live_on_the_volume_or_are_baked_on_request(commands):
    """HF_HOME defaults under /runpod-volume; BAKE_MODELS refuses a volume path; no downloads at run time."""
    args = _args(commands)
    assert args["HF_HOME"].startswith("/runpod-volume/")
    assert args["BAKE_MODELS"] == "0"
    bake = next(r for r in _runs(commands) if "BAKE_MODELS" in r)
    assert "/runpod-volume*" in bake
    assert "snapshot_download" in bake
    envs = " ".join(" ".join(c.value) for c in commands if c.cmd == "ENV")
    assert "HF_HUB_OFFLINE 1" in envs or "HF_HUB_OFFLINE=1" in envs


def test_dockerignore_keeps_what_the_image_needs():
    """The build context drops the venv, git and tests but keeps the code, handler and requirement files."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "tests"} <= set(patterns)
    for needed in [
        "orfeas",
        "orfeas_contract",
        "orfeas_worker",
        "handler.py",
        "test_input.json",
        "requirements.txt",
        "requirements-gpu.txt",
    ]:
        assert not any(fnmatch.fnmatch(needed, p) for p in patterns), needed


def test_runpod_toml_points_at_real_files():
    """runpod.toml parses and its handler, Dockerfile, requirements and test input exist."""
    config = tomllib.loads((ROOT / "runpod.toml").read_text())
    for key in ("handler_path", "dockerfile_path", "requirements_path", "test_input_path"):
        assert (ROOT / config["runtime"][key]).is_file(), key
    assert config["project"]["volume_mount_path"] == "/runpod-volume"
    timeout = config["endpoint"]["execution_timeout"]
    assert timeout > float(config["project"]["env_vars"]["ORFEAS_JOB_TIMEOUT_S"])


def _known_variables() -> set[str]:
    return {v for k, v in vars(settings_module).items() if k.isupper() and isinstance(v, str)}


def test_hub_json_has_the_required_fields_and_known_variables():
    """hub.json is a serverless GPU listing whose environment variables are ones the worker reads."""
    hub = json.loads((ROOT / ".runpod" / "hub.json").read_text())
    assert hub["type"] == "serverless"
    assert hub["category"] in {"audio", "embedding", "language", "video", "image"}
    assert hub["title"]
    assert hub["description"]
    config = hub["config"]
    assert config["runsOn"] == "GPU"
    assert "12.8" in config["allowedCudaVersions"]
    known = _known_variables()
    for entry in config["env"]:
        assert entry["key"] in known, entry["key"]
        assert ("value" in entry) != ("input" in entry)
    env = {e["key"]: e for e in config["env"]}
    # The values offered for the shape backend are the ones Settings accepts.
    for option in env["ORFEAS_AUTO_SHAPE_BACKEND"]["input"]["options"]:
        Settings.from_env({"ORFEAS_AUTO_SHAPE_BACKEND": option["value"]})


def test_hub_tests_are_valid_inputs():
    """Every test in .runpod/tests.json is a valid worker input, and the config's variables are known."""
    suite = json.loads((ROOT / ".runpod" / "tests.json").read_text())
    assert suite["tests"]
    for test in suite["tests"]:
        assert test["name"]
        assert test["timeout"] > 0
        parse_worker_input(test["input"], Settings(), resolver=PUBLIC)
    known = _known_variables()
    assert all(e["key"] in known for e in suite["config"].get("env", []))


def test_test_input_is_the_bundled_sample_and_validates():
    """test_input.json carries orfeas/samples/emblem.png as base64 and passes validation."""
    job = json.loads((ROOT / "test_input.json").read_text())
    parsed = parse_worker_input(job["input"], Settings(), resolver=PUBLIC)
    assert parsed.request.image is not None
    assert base64.b64decode(parsed.request.image) == (ROOT / "orfeas" / "samples" / "emblem.png").read_bytes()
    assert (ROOT / "test_input.json").stat().st_size < 16 * 1024
