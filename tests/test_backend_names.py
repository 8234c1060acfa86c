"""Backend names are stated once (orfeas.backend_names) and every reader agrees with them."""

from __future__ import annotations

import pytest

from orfeas import backend_names as names
from orfeas import registry
from orfeas.request import JobRequest
from orfeas.settings import Settings


@pytest.mark.parametrize(
    ("table", "listed"),
    [
        (registry.SHAPE_BACKENDS, names.SHAPES),
        (registry.BACKGROUND_BACKENDS, names.BACKGROUNDS),
        (registry.TEXTURE_BACKENDS, names.TEXTURES),
        (registry.TEXT_TO_IMAGE_BACKENDS, names.TEXT_TO_IMAGE),
    ],
)
def test_registry_builds_exactly_the_listed_backends(table: dict[str, str], listed: tuple[str, ...]) -> None:
    """Each registry table has a class for every listed name and no name that is not listed."""
    assert sorted(table) == sorted(listed)


def test_weights_free_shapes_are_shapes() -> None:
    """The weights-free shapes are a subset of the shapes, and the GPU shape is not among them."""
    assert names.WEIGHTS_FREE_SHAPES.issubset(names.SHAPES)
    assert "hunyuan" not in names.WEIGHTS_FREE_SHAPES


def test_request_schema_offers_auto_and_every_shape() -> None:
    """The request's `backend` field accepts `auto` and each listed shape, nothing else."""
    enum = JobRequest.model_json_schema()["properties"]["backend"]["enum"]
    assert enum == ["auto", *names.SHAPES]


@pytest.mark.parametrize("texture", names.TEXTURES)
@pytest.mark.parametrize("background", names.BACKGROUNDS)
def test_settings_accept_every_listed_backend(texture: str, background: str) -> None:
    """ORFEAS_TEXTURE_BACKEND and ORFEAS_BACKGROUND_BACKEND take every listed name."""
    s = Settings.from_env({"ORFEAS_TEXTURE_BACKEND": texture, "ORFEAS_BACKGROUND_BACKEND": background})
    assert (s.texture_backend, s.background_backend) == (texture, background)
