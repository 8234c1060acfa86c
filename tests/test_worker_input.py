"""Parsing a RunPod job's input: the request, the webhook and the output options."""

from __future__ import annotations

import pytest

from orfeas.errors import InvalidInput
from orfeas.settings import Settings
from orfeas_worker.job_input import parse_worker_input, webhook_of_bad_input

PUBLIC = lambda host, port: ["93.184.216.34"]  # noqa: E731
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_full_input_splits_into_request_webhook_and_output():
    """webhook and output are taken out; the rest is the orfeas request, validated as such."""
    parsed = parse_worker_input(
        {
            "image": "aGVsbG8=",
            "formats": ["stl", "glb", "stl"],
            "dimensions": {"height_mm": 50},
            "webhook": {"url": "https://hooks.example.com/a", "secret": SECRET},
            "output": {"inline": True, "presign_seconds": 900},
        },
        Settings(),
        resolver=PUBLIC,
    )
    assert parsed.request.formats == ("stl", "glb")
    assert parsed.request.dimensions is not None
    assert parsed.request.dimensions.size_mm == 50
    assert parsed.webhook is not None
    assert parsed.webhook.host == "hooks.example.com"
    assert parsed.webhook.secret == SECRET
    assert parsed.output.inline
    assert parsed.output.presign_seconds == 900


def test_defaults_without_webhook_or_output():
    """No webhook: none is called; output defaults to no inline bodies and the setting's lifetime."""
    parsed = parse_worker_input({"prompt": "a cat"}, Settings())
    assert parsed.webhook is None
    assert not parsed.output.inline
    assert parsed.output.presign_seconds is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"image": "x", "output": {"inline": True, "zip": True}}, "output.zip"),
        ({"image": "x", "output": []}, "output"),
        ({"image": "x", "output": {"presign_seconds": 8 * 24 * 3600}}, "output.presign_seconds"),
        ({"image": "x", "webhook": "gopher://x"}, "webhook"),
        ({"image": "x", "webhook": {"url": "https://hooks.example.com", "secret": 5}}, "webhook.secret"),
        (["image"], "input"),
    ],
)
def test_bad_options_name_their_field(raw, field):
    """Errors in the worker's own options carry the dotted field, like the request's."""
    with pytest.raises(InvalidInput) as info:
        parse_worker_input(raw, Settings(), resolver=PUBLIC)
    assert info.value.field == field


def test_the_webhook_of_a_bad_input_is_found_when_it_alone_is_valid():
    """A refused input with a good webhook still yields the webhook; a bad webhook yields none."""
    good = webhook_of_bad_input(
        {"formats": "zip", "webhook": "https://h.example.com/x"}, Settings(), resolver=PUBLIC
    )
    assert good is not None
    assert good.url == "https://h.example.com/x"
    assert webhook_of_bad_input({"webhook": "http://127.0.0.1/x"}, Settings()) is None
    assert webhook_of_bad_input("not a dict", Settings()) is None
