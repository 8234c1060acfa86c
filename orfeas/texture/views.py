"""Hunyuan3D-Paint's orthographic views of a mesh, and the conditioning maps rendered from them.

The mesh is first fitted into Hunyuan's unit frame (Y up, centred, longest side 1.15), and each
view looks at the origin from azimuth/elevation on a sphere, with an orthographic window 1.2
wide — the numbers of hy3dgen's MeshRender (scale_factor 1.15, ortho_scale 1.2, distance 1.45)
and of its six candidate views with their bake weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from orfeas.texture.raster import Raster, rasterize

SCALE_FACTOR = 1.15
ORTHO_SCALE = 1.2
CAMERA_DISTANCE = 1.45


@dataclass(frozen=True)
class View:
    azim: float  # degrees, 0 = looking at the front (+Z towards the camera)
    elev: float  # degrees, 90 = from above
    weight: float = 1.0


PAINT_VIEWS = (
    View(0, 0, 1.0),
    View(90, 0, 0.1),
    View(180, 0, 0.5),
    View(270, 0, 0.1),
    View(0, 90, 0.05),
    View(180, -90, 0.05),
)


def normalise(vertices: np.ndarray) -> np.ndarray:
    """Centre on the bounding box and scale the longest side to SCALE_FACTOR (hy3dgen's mesh frame)."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((hi - lo).max()) or 1.0
    result: np.ndarray = (vertices - (lo + hi) / 2) * (SCALE_FACTOR / extent)
    return result


def camera_basis(view: View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, forward) unit vectors of the camera; forward points from the camera into the scene."""
    az, el = math.radians(view.azim), math.radians(view.elev)
    towards_camera = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    forward = -towards_camera
    # Straight above or below, "up" on the picture is the scene's -Z (resp. +Z) turned by the azimuth.
    reference = (
        np.array([0.0, 1.0, 0.0]) if abs(view.elev) < 89.9 else np.array([-math.sin(az), 0, -math.cos(az)])
    )
    if view.elev < -89.9:
        reference = -reference
    right = np.cross(forward, reference)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return right, up, forward


def project(vertices: torch.Tensor, view: View, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions (V, 2) and depths (V,) of normalised vertices in a `size`² orthographic view."""
    right, up, forward = (
        torch.as_tensor(v, dtype=vertices.dtype, device=vertices.device) for v in camera_basis(view)
    )
    x = vertices @ right
    y = vertices @ up
    depth = vertices @ forward + CAMERA_DISTANCE
    half = ORTHO_SCALE / 2
    xy = torch.stack([(x / half + 1) * 0.5 * size, (1 - y / half) * 0.5 * size], dim=-1)
    return xy, depth


def render(vertices: torch.Tensor, faces: torch.Tensor, view: View, size: int) -> Raster:
    xy, depth = project(vertices, view, size)
    return rasterize(xy, depth, faces, size, size)


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = vertices[faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    result: torch.Tensor = n / n.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return result


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = vertices[faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
    out = torch.zeros_like(vertices).index_add_(0, faces.flatten(), n.repeat_interleave(3, dim=0))
    result: torch.Tensor = out / out.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return result


def conditioning_maps(
    vertices: torch.Tensor, faces: torch.Tensor, view: View, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal map, position map (RGB uint8, white background as hy3dgen renders them) and coverage mask."""
    raster = render(vertices, faces, view, size)
    normals = raster.interpolate(vertex_normals(vertices, faces), faces)
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    positions = raster.interpolate(vertices, faces)
    mask = raster.mask
    normal_rgb = torch.where(mask[..., None], (normals + 1) * 0.5, torch.ones_like(normals))
    position_rgb = torch.where(
        mask[..., None], (positions / SCALE_FACTOR + 0.5).clamp(0, 1), torch.ones_like(positions)
    )

    def as_u8(t: torch.Tensor) -> np.ndarray:
        u8: np.ndarray = (t * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        return u8

    return as_u8(normal_rgb), as_u8(position_rgb), mask.cpu().numpy()
