"""Synthetic cutouts, a stage context, and geometric probes for the shape and texture tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from orfeas.deadline import Deadline
from orfeas.settings import Settings
from orfeas.types import Cutout, StageContext

EMBLEM = Path(__file__).resolve().parents[1] / "orfeas" / "samples" / "emblem.png"


def make_ctx(stage: str = "shape", seconds: float | None = 60.0) -> tuple[StageContext, list[float]]:
    """A stage context whose progress reports land in the returned list."""
    reports: list[float] = []
    ctx = StageContext(
        job_id="test",
        stage=stage,
        settings=Settings(),
        report=reports.append,
        deadline=Deadline(seconds),
    )
    return ctx, reports


def cutout_from(mask: np.ndarray, rgb: np.ndarray | None = None, method: str = "alpha") -> Cutout:
    """A Cutout as the background stage makes it: RGBA, alpha = mask · 255."""
    mask = np.asarray(mask, dtype=bool)
    if rgb is None:
        rgb = np.zeros((*mask.shape, 3), dtype=np.uint8)
        rgb[mask] = (200, 30, 40)
    rgba = np.dstack([rgb.astype(np.uint8), mask.astype(np.uint8) * 255])
    return Cutout(image=Image.fromarray(rgba), mask=mask, method=method)


def emblem_cutout() -> Cutout:
    image = Image.open(EMBLEM).convert("RGBA")
    mask = np.asarray(image)[..., 3] > 127
    return Cutout(image=image, mask=mask, method="alpha")


def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:height, 0:width].astype(np.float64)


def ring_mask(height: int = 200, width: int = 300, outer: float = 80, inner: float = 35) -> np.ndarray:
    """A ring (annulus) centred in the picture: one part with one hole."""
    y, x = grid(height, width)
    r = np.hypot(y - height / 2, x - width / 2)
    return (r < outer) & (r > inner)


def two_blobs_mask(height: int = 160, width: int = 320) -> np.ndarray:
    """Two separate discs, left and right."""
    y, x = grid(height, width)
    return (np.hypot(y - 80, x - 80) < 50) | (np.hypot(y - 80, x - 240) < 40)


def letters_mask(height: int = 120, width: int = 260) -> np.ndarray:
    """Block letters "O" (a hole), "L" and "T" side by side, in strokes 12 px wide."""
    m = np.zeros((height, width), dtype=bool)
    m[20:100, 20:80] = True
    m[40:80, 32:68] = False  # the O's counter
    m[20:100, 100:112] = True  # L stem
    m[88:100, 100:150] = True  # L foot
    m[20:32, 170:240] = True  # T bar
    m[20:100, 199:211] = True  # T stem
    return m


def gradient_photo(height: int = 180, width: int = 240, seed: int = 1) -> np.ndarray:
    """A photo-like RGB picture: a smooth left-to-right brightness ramp with colour and noise."""
    rng = np.random.default_rng(seed)
    y, x = grid(height, width)
    ramp = 30 + 200 * x / (width - 1)
    rgb = np.stack([ramp, ramp * 0.8 + 20 * np.sin(y / 9), ramp * 0.6 + 30 * np.cos(x / 13)], axis=-1)
    rgb += rng.normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def vertical_hits(mesh: trimesh.Trimesh, x: float, y: float) -> int:
    """How many faces a vertical line through (x, y) crosses (their XY projection covers it)."""
    tri = mesh.triangles[:, :, :2]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    p = np.array([x, y])

    def cross(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (v[:, 0] - u[:, 0]) * (w[1] - u[:, 1]) - (v[:, 1] - u[:, 1]) * (w[0] - u[:, 0])

    d1, d2, d3 = cross(a, b, p), cross(b, c, p), cross(c, a, p)
    inside = ((d1 > 0) & (d2 > 0) & (d3 > 0)) | ((d1 < 0) & (d2 < 0) & (d3 < 0))
    return int(inside.sum())


def assert_closed_solid(mesh: trimesh.Trimesh) -> None:
    """Watertight, consistently wound, outward-facing, no degenerate faces (nor needles)."""
    assert len(mesh.faces) > 0
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0
    assert np.all(mesh.area_faces > 0)
    # What a repair step would drop as degenerate (a height under trimesh's merge tolerance).
    assert mesh.nondegenerate_faces().all()
