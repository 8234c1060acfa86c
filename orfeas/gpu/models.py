"""Where model weights are on this machine: a baked directory, else the Hugging Face cache.

Nothing here downloads. Weights reach a worker ahead of time (baked into the image, or fetched
once onto the RunPod network volume), so a missing model is a clear `model_unavailable` naming
the model and every path looked in, instead of a download that hangs a job on a cold worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orfeas.errors import ModelUnavailable
from orfeas.settings import HF_HUB_OFFLINE, MODEL_DIR, Settings


def hub_cache_dir(settings: Settings) -> Path:
    """The hub cache under HF_HOME (`$HF_HOME/hub`), where huggingface_hub keeps snapshots."""
    return Path(settings.hf_home) / "hub"


def _cached_snapshot(settings: Settings, repo_id: str) -> Path | None:
    """The snapshot that the cache's `main` ref points at, else the newest snapshot, else None."""
    repo_dir = hub_cache_dir(settings) / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if candidate.is_dir():
            return candidate
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def candidate_dirs(settings: Settings, model: str) -> list[Path]:
    """Every directory the model may be in, in the order they are tried."""
    dirs: list[Path] = []
    as_path = Path(model).expanduser()
    if as_path.is_absolute() or model.startswith("."):
        return [as_path]
    if settings.model_dir is not None:
        # Baked layout: `$ORFEAS_MODEL_DIR/<org>/<name>`, or `$ORFEAS_MODEL_DIR/<name>`.
        dirs.append(settings.model_dir / model)
        dirs.append(settings.model_dir / model.rsplit("/", 1)[-1])
    snapshot = _cached_snapshot(settings, model)
    # Without a snapshot the message still names where one would be; "<revision>" never exists,
    # so a stray subfolder directly under snapshots/ is not mistaken for the model.
    dirs.append(
        snapshot
        if snapshot is not None
        else hub_cache_dir(settings) / ("models--" + model.replace("/", "--")) / "snapshots" / "<revision>"
    )
    return list(dict.fromkeys(dirs))


def resolve_model_dir(
    settings: Settings,
    model: str,
    *,
    subfolder: str | None = None,
    needs: Iterable[str] = (),
) -> Path:
    """The local directory holding `model` (and its `subfolder`), with every file of `needs` present.

    `needs` entries may be alternatives separated by `|` ("model.fp16.safetensors|model.ckpt").
    Raises ModelUnavailable naming the model and the paths looked in.
    """
    needed = [tuple(n.split("|")) for n in needs]
    looked: list[str] = []
    for base in candidate_dirs(settings, model):
        folder = base / subfolder if subfolder else base
        looked.append(str(folder))
        if folder.is_dir() and all(any((folder / alt).is_file() for alt in alts) for alts in needed):
            return folder
    what = f"{model}/{subfolder}" if subfolder else model
    files = f" with {', '.join('|'.join(a) for a in needed)}" if needed else ""
    hint = (
        f"bake it under {MODEL_DIR} or fetch it into the cache at HF_HOME before start"
        f" ({HF_HUB_OFFLINE}={'1' if settings.hf_hub_offline else '0'}; nothing is downloaded at run time)"
    )
    raise ModelUnavailable(
        f"model {what!r} not found{files}; looked in {', '.join(looked)}; {hint}",
        model=model,
        path=looked[0] if looked else None,
    )
