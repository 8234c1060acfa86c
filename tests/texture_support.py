"""Meshes for the texture tests: a sphere pierced by a box (faces that hide others), in the paint frame."""

from __future__ import annotations

import numpy as np
import trimesh

from orfeas.texture.views import normalise


def sphere_and_box(subdivisions: int = 3, seed: int = 1) -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.6)
    box = trimesh.creation.box(extents=(0.5, 1.4, 0.5))
    box.apply_translation((0.45, 0.1, 0.2))
    mesh = trimesh.util.concatenate([sphere, box])
    mesh.apply_transform(
        trimesh.transformations.random_rotation_matrix(np.random.default_rng(seed).random(3))
    )
    return trimesh.Trimesh(normalise(mesh.vertices), mesh.faces, process=False)
