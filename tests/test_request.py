"""The job request schema: exactly what is asked, rejected with the field at fault otherwise."""

import pytest

from orfeas.errors import InvalidInput
from orfeas.request import QUALITY_FACES, parse_request


def test_minimal_request_gets_defaults():
    """Only a picture is needed; formats, quality and texture have defaults."""
    r = parse_request({"image": "aGk="})
    assert r.formats == ("glb", "stl")
    assert r.quality == 5
    assert r.texture is True
    assert r.face_budget == QUALITY_FACES[5]


def test_views_are_the_given_images_in_view_order_or_the_image_as_front():
    """`views()` lists the given views front, left, back, right; a plain `image` is the front view."""
    r = parse_request({"images": {"right": "cg==", "front": "Zg=="}})
    assert r.views() == {"front": "Zg==", "right": "cg=="}
    assert parse_request({"image": "aGk="}).views() == {"front": "aGk="}
    assert parse_request({"prompt": "a cat"}).views() == {}


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({}, "image", "exactly one of image or prompt"),
        ({"image": "x", "prompt": "a cat"}, "image", "exactly one"),
        ({"images": {"left": "x"}}, "images.front", "required"),
        ({"images": {"front": "x", "top": "y"}}, "images.top", "unknown field"),
        ({"images": {"front": "x", "left": ""}}, "images.left", "at least 1 character"),
        ({"images": {"front": "x"}, "image": "y"}, "images", "without image or prompt"),
        ({"images": {"front": "x"}, "prompt": "a cat"}, "images", "without image or prompt"),
        ({"images": "x"}, "images", "JSON object"),
        ({"image": "x", "formats": ["glb", "fbx"]}, "formats.1", "must be one of"),
        ({"image": "x", "formats": []}, "formats", "at least one"),
        ({"image": "x", "quality": 11}, "quality", "less than or equal to 10"),
        ({"image": "x", "quality": "5"}, "quality", "valid integer"),
        ({"image": "x", "colour": "red"}, "colour", "unknown field"),
        ({"image": "x", "texture": "false"}, "texture", "valid boolean"),
        ({"image": "x", "dimensions": {"width_mm": 10, "height_mm": 20}}, "dimensions", "exactly one"),
        ({"image": "x", "dimensions": {"width_mm": -1}}, "dimensions.width_mm", "greater than or equal to 1"),
        (
            {"image": "x", "dimensions": {"width_mm": 1e-9}},
            "dimensions.width_mm",
            "greater than or equal to 1",
        ),
        (
            {"image": "x", "dimensions": {"depth_mm": 0.5}},
            "dimensions.depth_mm",
            "greater than or equal to 1",
        ),
        ({"image": "x", "target_faces": 10}, "target_faces", "greater than or equal"),
        ({"image": "x", "backend": "magic"}, "backend", "must be one of"),
        ({"image": 5}, "image", "valid string"),
    ],
)
def test_bad_requests_name_the_field(data, field, fragment):
    """Each bad request raises invalid_input naming the offending field and why."""
    with pytest.raises(InvalidInput) as info:
        parse_request(data)
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(info.value).startswith(f"invalid_input: {field}: ")


def test_non_object_input_is_refused():
    """A JSON array or string instead of an object is refused as invalid input."""
    with pytest.raises(InvalidInput, match="expected a JSON object"):
        parse_request(["image"])


def test_duplicate_formats_collapse_in_order():
    """Asking for a format twice yields it once, keeping the first order."""
    assert parse_request({"image": "x", "formats": ["stl", "glb", "stl"]}).formats == ("stl", "glb")


def test_dimensions_give_axis_and_size():
    """width is X, depth is Y and height is Z (the slicer convention)."""
    for name, axis in (("width_mm", 0), ("depth_mm", 1), ("height_mm", 2)):
        d = parse_request({"image": "x", "dimensions": {name: 80}}).dimensions
        assert d is not None
        assert d.axis == axis
        assert d.size_mm == 80


def test_face_budget_grows_with_quality():
    """Higher quality never means fewer faces, and target_faces overrides quality."""
    budgets = [QUALITY_FACES[q] for q in range(1, 11)]
    assert budgets == sorted(budgets)
    assert parse_request({"image": "x", "quality": 1, "target_faces": 5000}).face_budget == 5000
