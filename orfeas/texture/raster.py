"""Triangle rasterisation in PyTorch (CPU or CUDA): per-pixel face id, depth and barycentrics.

This replaces hy3dgen's compiled `custom_rasterizer` for the two affine cases the texture stage
needs: orthographic views of the mesh (Hunyuan3D-Paint renders its six views orthographically)
and the UV atlas itself. Vertices arrive in pixel coordinates (x right, y down, pixel (i, j)
centred at (j + 0.5, i + 0.5)) with a depth each (smaller is nearer). A pixel is covered by a
triangle when its centre is inside or on an edge; the nearest triangle wins, ties to the lower
face id, through one int64 key per candidate (ordered depth bits << 32 | face id) reduced with
`scatter_reduce(amin)` — no atomics of our own, no sort.

Work is split into chunks of at most `CANDIDATE_BUDGET` (pixel, face) candidates, so memory is
bounded whatever the mesh (about 60 bytes a candidate: 2**22 is ~250 MB at peak).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CANDIDATE_BUDGET = 1 << 22
_EMPTY = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Raster:
    """One rasterised image: `face` is -1 where nothing was drawn."""

    face: torch.Tensor  # (H, W) int64
    depth: torch.Tensor  # (H, W) float32, +inf where empty
    bary: torch.Tensor  # (H, W, 3) float32, zeros where empty

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0

    def interpolate(self, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-vertex attributes (V, C) interpolated at each covered pixel; zeros elsewhere."""
        out = torch.zeros(
            *self.face.shape, attributes.shape[1], dtype=attributes.dtype, device=attributes.device
        )
        covered = self.mask
        corners = attributes[faces[self.face[covered]]]  # (P, 3, C)
        out[covered] = (corners * self.bary[covered].to(attributes.dtype)[..., None]).sum(dim=1)
        return out


def _ordered_bits(depth: torch.Tensor) -> torch.Tensor:
    """float32 → int64 whose order is the floats' order (negatives' magnitude bits flipped)."""
    bits = depth.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _edge(
    ax: torch.Tensor, ay: torch.Tensor, bx: torch.Tensor, by: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> torch.Tensor:
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def _barycentric(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Barycentric weights (N, 3) of points (px, py) in triangles tri (N, 3, 2)."""
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    x1, y1 = tri[:, 1, 0], tri[:, 1, 1]
    x2, y2 = tri[:, 2, 0], tri[:, 2, 1]
    area = _edge(x0, y0, x1, y1, x2, y2)
    w0 = _edge(x1, y1, x2, y2, px, py) / area
    w1 = _edge(x2, y2, x0, y0, px, py) / area
    return torch.stack([w0, w1, 1.0 - w0 - w1], dim=-1)


def rasterize(
    xy: torch.Tensor,
    depth: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    budget: int = CANDIDATE_BUDGET,
) -> Raster:
    """Rasterise triangles `faces` (F, 3) over vertices at pixel positions `xy` (V, 2) with `depth` (V,)."""
    device = xy.device
    xy = xy.to(torch.float32)
    depth = depth.to(torch.float32)
    faces = faces.to(device=device, dtype=torch.int64)
    tri = xy[faces]  # (F, 3, 2)
    # Pixels whose centre (j + 0.5) lies within the triangle's box.
    lo = torch.ceil(tri.amin(dim=1) - 0.5).to(torch.int64)
    hi = torch.floor(tri.amax(dim=1) - 0.5).to(torch.int64)
    lo[:, 0].clamp_(min=0)
    lo[:, 1].clamp_(min=0)
    hi[:, 0].clamp_(max=width - 1)
    hi[:, 1].clamp_(max=height - 1)
    span = (hi - lo + 1).clamp(min=0)
    area = _edge(tri[:, 0, 0], tri[:, 0, 1], tri[:, 1, 0], tri[:, 1, 1], tri[:, 2, 0], tri[:, 2, 1])
    counts = torch.where(area.abs() > 1e-12, span[:, 0] * span[:, 1], torch.zeros_like(span[:, 0]))
    keys = torch.full((height * width,), _EMPTY, dtype=torch.int64, device=device)

    drawn = torch.nonzero(counts > 0).flatten()
    ends = torch.cumsum(counts[drawn], dim=0)
    start = 0
    while start < len(drawn):
        base = ends[start - 1] if start > 0 else ends.new_zeros(())
        stop = int(torch.searchsorted(ends, base + budget, right=True))
        stop = max(stop, start + 1)  # one face larger than the budget goes alone
        chunk = drawn[start:stop]
        start = stop
        cnt = counts[chunk]
        rep = torch.repeat_interleave(torch.arange(len(chunk), device=device), cnt)
        offsets = torch.cumsum(cnt, dim=0) - cnt
        local = torch.arange(int(cnt.sum()), device=device) - offsets[rep]
        f = chunk[rep]
        bw = span[f, 0]
        px = lo[f, 0] + local % bw
        py = lo[f, 1] + local // bw
        w = _barycentric(tri[f], px.to(torch.float32) + 0.5, py.to(torch.float32) + 0.5)
        inside = (w >= -1e-6).all(dim=1)
        f, px, py, w = f[inside], px[inside], py[inside], w[inside]
        d = (w * depth[faces[f]]).sum(dim=1)
        key = (_ordered_bits(d) << 32) | f
        keys.scatter_reduce_(0, py * width + px, key, reduce="amin")

    keys = keys.view(height, width)
    covered = keys != _EMPTY
    face = torch.where(covered, keys & _LOW32, torch.full_like(keys, -1))
    bary = torch.zeros(height, width, 3, dtype=torch.float32, device=device)
    depth_map = torch.full((height, width), float("inf"), dtype=torch.float32, device=device)
    rows, cols = torch.nonzero(covered, as_tuple=True)
    if len(rows):
        f = face[rows, cols]
        w = _barycentric(tri[f], cols.to(torch.float32) + 0.5, rows.to(torch.float32) + 0.5).clamp(min=0)
        w = w / w.sum(dim=1, keepdim=True)
        bary[rows, cols] = w
        depth_map[rows, cols] = (w * depth[faces[f]]).sum(dim=1)
    return Raster(face=face, depth=depth_map, bary=bary)
