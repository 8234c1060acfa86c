"""Server settings from the environment: defaults, derived values, and errors naming the variable."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from callback_server.settings import ServerSettings
from orfeas.errors import ConfigError


def test_defaults():
    """With nothing set: port 8080, the SQLite file, no upstream, no auth."""
    s = ServerSettings.from_env({})
    assert (s.port, s.database_url, s.runpod_endpoint_url, s.auth_required) == (
        8080,
        "sqlite:///./callback_server.db",
        None,
        False,
    )


def test_endpoint_id_builds_the_cloud_url_and_loopback_means_local():
    """RUNPOD_ENDPOINT_ID gives RunPod's cloud URL; a loopback URL selects the local dev server."""
    cloud = ServerSettings.from_env({"RUNPOD_ENDPOINT_ID": "abc123"})
    assert cloud.runpod_endpoint_url == "https://api.runpod.ai/v2/abc123"
    assert not cloud.runpod_local
    local = ServerSettings.from_env({"RUNPOD_ENDPOINT_URL": "http://127.0.0.1:8000/"})
    assert local.runpod_endpoint_url == "http://127.0.0.1:8000"
    assert local.runpod_local
    forced = ServerSettings.from_env({"RUNPOD_ENDPOINT_URL": "http://worker:8000", "RUNPOD_LOCAL": "1"})
    assert forced.runpod_local


def test_slow_client_limits_are_read_and_checked():
    """Head and body timeouts and the connection cap come from their variables; a bad one names it."""
    s = ServerSettings.from_env(
        {"CALLBACK_HEAD_TIMEOUT_S": "2.5", "CALLBACK_BODY_TIMEOUT_S": "7", "CALLBACK_MAX_CONNECTIONS": "300"}
    )
    assert (s.head_timeout_s, s.body_timeout_s, s.max_connections) == (2.5, 7.0, 300)
    assert (ServerSettings().head_timeout_s, ServerSettings().max_connections) == (10.0, 4096)
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_env({"CALLBACK_MAX_CONNECTIONS": "3"})
    assert info.value.field == "CALLBACK_MAX_CONNECTIONS"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"PUBLIC_URL": "cb.example.com"}, "PUBLIC_URL"),
        ({"RUNPOD_ENDPOINT_URL": "ftp://x"}, "RUNPOD_ENDPOINT_URL"),
        ({"RUNPOD_ENDPOINT_ID": "../etc"}, "RUNPOD_ENDPOINT_ID"),
        ({"RUNPOD_LOCAL": "maybe"}, "RUNPOD_LOCAL"),
        ({"CALLBACK_REFRESH_SECONDS": "-1"}, "CALLBACK_REFRESH_SECONDS"),
        ({"CALLBACK_MAX_BODY_BYTES": "10"}, "CALLBACK_MAX_BODY_BYTES"),
        ({"LEADER_LEASE_SECONDS": "x"}, "LEADER_LEASE_SECONDS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(env, variable):
    """A malformed value fails at start with ConfigError naming the variable."""
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_env(env)
    assert info.value.field == variable


def test_settings_are_frozen():
    """The settings object cannot be changed after start."""
    s = ServerSettings.from_env({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_import_stays_light():
    """`import callback_server.serve` loads no numpy, Pillow, trimesh or torch."""
    code = "import sys, callback_server.serve; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not ({"numpy", "PIL", "trimesh", "torch", "scipy"} & loaded)


def test_a_webhook_secret_that_cannot_sign_fails_at_start():
    """The server checks ORFEAS_WEBHOOK_SECRET as the worker does: a junk whsec_ secret names the variable."""
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_env({"ORFEAS_WEBHOOK_SECRET": "whsec_not base64!"})
    assert info.value.field == "ORFEAS_WEBHOOK_SECRET"
    # Without the prefix a secret is base64 too (as the reference library reads it), not raw text.
    unprefixed = base64.b64encode(b"k" * 24).decode()
    assert ServerSettings.from_env({"ORFEAS_WEBHOOK_SECRET": unprefixed}).auth_required
    for short in ("plain-text-secret", "whsec_" + base64.b64encode(b"k" * 23).decode()):
        with pytest.raises(ConfigError) as info:
            ServerSettings.from_env({"ORFEAS_WEBHOOK_SECRET": short})
        assert info.value.field == "ORFEAS_WEBHOOK_SECRET"
        assert "at least 24" in str(info.value)


def test_an_empty_environment_gives_the_fields_defaults():
    """Every default is the dataclass field's: from_env of nothing equals ServerSettings()."""
    assert ServerSettings.from_env({}) == ServerSettings()
