"""Bake pictures of a mesh seen from known views into its UV texture (PyTorch, CPU or CUDA).

1. The UV atlas is rasterised (orfeas/texture/raster.py): each texel gets its face and
   barycentrics, hence its 3D position and the face's normal.
2. Each view is rasterised for its depth buffer; a texel takes colour from a view when its
   projected depth is within `DEPTH_TOLERANCE_PX` pixels of the nearest surface there (per-texel
   visibility by depth test), weighted by the view's weight times cos(normal, view)^BAKE_EXP —
   hy3dgen's own rule (bake_exp 4): a surface seen edge-on gives way to a view that faces it.
3. Texels inside charts that no view saw are filled with OpenCV's Telea inpainting, and colour
   is then pushed `PADDING_PX` texels out of every chart, so bilinear filtering and mipmaps
   never read the empty atlas at a seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from orfeas.texture.raster import Raster, rasterize
from orfeas.texture.views import ORTHO_SCALE, View, camera_basis, face_normals, project, render

BAKE_EXP = 4
# A texel counts as seen when within this many view pixels of the depth buffer: the depth at a
# pixel centre and at a texel's exact position differ by up to a pixel's footprint on a slope.
DEPTH_TOLERANCE_PX = 2.0
# Faces seen at more than ~84° from the view (cos < 0.1) add nothing but stretched pixels.
MIN_COSINE = 0.1
PADDING_PX = 4
INPAINT_RADIUS_PX = 3
INPAINT_SIZE = 512


@dataclass(frozen=True)
class BakeResult:
    texture: np.ndarray  # (S, S, 3) uint8, sRGB as the views were
    covered: np.ndarray  # (S, S) bool: texels inside a chart
    seen: np.ndarray  # (S, S) bool: texels some view coloured (the rest of `covered` is inpainted)

    @property
    def seen_share(self) -> float:
        total = int(self.covered.sum())
        return float(self.seen.sum()) / total if total else 0.0


def uv_raster(faces: torch.Tensor, uvs: torch.Tensor, size: int) -> Raster:
    """The atlas rasterised at `size`² texels (u → column, v → row)."""
    xy = uvs.to(torch.float32) * size
    return rasterize(xy, torch.zeros(len(uvs), device=uvs.device), faces, size, size)


def bake(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    views: Sequence[View],
    images: Sequence[np.ndarray],
    texture_size: int,
    *,
    device: torch.device | str = "cpu",
) -> BakeResult:
    """Texture of `texture_size`² from `images` ((H, H, 3) uint8, one per view) of the normalised mesh."""
    device = torch.device(device)
    # np.array copies: torch warns on (and must not write through) read-only numpy buffers.
    v = torch.as_tensor(np.array(vertices, dtype=np.float32), device=device)
    f = torch.as_tensor(np.array(faces, dtype=np.int64), device=device)
    uv = torch.as_tensor(np.array(uvs, dtype=np.float32), device=device)
    atlas = uv_raster(f, uv, texture_size)
    covered = atlas.mask
    texel_face = atlas.face[covered]
    texel_pos = (v[f[texel_face]] * atlas.bary[covered][..., None]).sum(dim=1)
    texel_normal = face_normals(v, f)[texel_face]
    total = torch.zeros(len(texel_face), 3, device=device)
    weight = torch.zeros(len(texel_face), device=device)
    for view, image in zip(views, images, strict=True):
        picture = torch.as_tensor(np.array(image, dtype=np.float32), device=device) / 255.0
        size = picture.shape[0]
        raster = render(v, f, view, size)
        xy, depth = project(texel_pos, view, size)
        visible = _visible(raster.depth, xy, depth, DEPTH_TOLERANCE_PX * ORTHO_SCALE / size)
        forward = torch.as_tensor(camera_basis(view)[2], dtype=torch.float32, device=device)
        cosine = -(texel_normal @ forward)
        use = visible & (cosine > MIN_COSINE)
        w = torch.where(use, view.weight * cosine.clamp(min=0) ** BAKE_EXP, torch.zeros_like(cosine))
        grid = (xy / size * 2 - 1).view(1, 1, -1, 2)
        sampled = torch.nn.functional.grid_sample(
            picture.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border", align_corners=False
        )[0, :, 0].T  # (T, 3)
        total += sampled * w[:, None]
        weight += w
    seen_texels = weight > 0
    colours = torch.zeros_like(total)
    colours[seen_texels] = total[seen_texels] / weight[seen_texels, None]
    texture = torch.zeros(texture_size, texture_size, 3, device=device)
    texture[covered] = colours
    seen = torch.zeros_like(covered)
    seen[covered] = seen_texels
    image = (texture * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    covered_np, seen_np = covered.cpu().numpy(), seen.cpu().numpy()
    return BakeResult(texture=fill_and_pad(image, covered_np, seen_np), covered=covered_np, seen=seen_np)


def _visible(
    depth_map: torch.Tensor, xy: torch.Tensor, depth: torch.Tensor, tolerance: float
) -> torch.Tensor:
    """Texels whose depth is within `tolerance` of the depth buffer at all four bilinear taps.

    Testing only the nearest pixel lets a texel just behind an occluding edge borrow the
    occluder's colour through the bilinear footprint, and one on the silhouette the background's;
    all four taps keep both out.
    """
    size = depth_map.shape[0]
    base_col = (xy[:, 0] - 0.5).floor().long()
    base_row = (xy[:, 1] - 0.5).floor().long()
    ok = torch.ones_like(depth, dtype=torch.bool)
    for dr in (0, 1):
        for dc in (0, 1):
            row = (base_row + dr).clamp(0, size - 1)
            col = (base_col + dc).clamp(0, size - 1)
            tap = depth_map[row, col]
            ok &= torch.isfinite(tap) & (depth <= tap + tolerance)  # an empty tap is background colour
    centre_col, centre_row = xy[:, 0].floor(), xy[:, 1].floor()
    return ok & (centre_col >= 0) & (centre_col < size) & (centre_row >= 0) & (centre_row < size)


def fill_and_pad(texture: np.ndarray, covered: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Inpaint chart texels no view saw, then grow every chart's colour PADDING_PX texels outwards."""
    import cv2

    out = texture.copy()
    holes = covered & ~seen
    if holes.any() and seen.any():
        # Telea takes every pixel outside its mask as known, so the mask is everything unseen (the
        # empty atlas too, else its black would bleed in), on a copy of at most INPAINT_SIZE² —
        # a hole's colour is a smooth guess, and Telea's time grows with the masked area.
        size = texture.shape[0]
        small = min(size, INPAINT_SIZE)
        unseen: np.ndarray = cv2.resize(
            (~seen).astype(np.uint8), (small, small), interpolation=cv2.INTER_NEAREST
        )
        # A texel counts as known at the small size only when all texels it stands for were seen.
        if small < size:
            unseen = cv2.resize((~seen).astype(np.float32), (small, small), interpolation=cv2.INTER_AREA) > 0
            unseen = unseen.astype(np.uint8)
        guess = cv2.inpaint(
            cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA),
            unseen,
            INPAINT_RADIUS_PX,
            cv2.INPAINT_TELEA,
        )
        guess = cv2.resize(guess, (size, size), interpolation=cv2.INTER_LINEAR)
        out[holes] = guess[holes]
    filled = covered.copy() if seen.any() else np.zeros_like(covered)
    # Each pass gives an empty texel next to the filled area the mean of its filled 3x3 neighbours.
    kernel = np.ones((3, 3), np.float32)
    for _ in range(PADDING_PX):
        mask = filled.astype(np.float32)
        count = cv2.filter2D(mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        summed = cv2.filter2D(
            out.astype(np.float32) * mask[..., None], -1, kernel, borderType=cv2.BORDER_CONSTANT
        )
        grow = (count > 0) & ~filled
        out[grow] = (summed[grow] / count[grow, None] + 0.5).astype(np.uint8)
        filled |= grow
    return out
