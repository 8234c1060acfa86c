"""Settings come from the environment, validated once, with the variable named on error."""

import base64
from pathlib import Path

import pytest

from orfeas.errors import ConfigError
from orfeas.settings import Settings


def test_defaults_need_no_environment():
    """An empty environment gives the embedded defaults (CPU, weights-free, local output)."""
    s = Settings.from_env({})
    assert s.output_dir == Path("output")
    assert s.auto_shape_backend == "weights_free"
    assert s.allow_private_webhooks is False
    assert s.s3_bucket is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("true", True), ("ON", True), ("0", False), ("false", False), ("no", False)],
)
def test_booleans_are_parsed_explicitly(raw, value):
    """'false', '0' and 'no' are false; '1', 'true' and 'on' are true."""
    assert Settings.from_env({"ORFEAS_ALLOW_PRIVATE_WEBHOOKS": raw}).allow_private_webhooks is value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ORFEAS_ALLOW_PRIVATE_WEBHOOKS", "maybe"),
        ("ORFEAS_JOB_TIMEOUT_S", "ten"),
        ("ORFEAS_DEFAULT_SIZE_MM", "0"),
        ("ORFEAS_DTYPE", "fp8"),
        ("ORFEAS_CONCURRENCY", "-1"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name, raw):
    """A malformed value raises ConfigError whose text starts with the code and names the variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: raw})
    assert str(info.value).startswith(f"config_error: {name}: ")


def test_settings_are_frozen():
    """Settings cannot be changed after they are built."""
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.job_timeout_s = 1  # type: ignore[misc]


def test_prefix_is_normalised_without_slashes():
    """The S3 prefix loses leading and trailing slashes so keys never hold '//'."""
    assert Settings.from_env({"ORFEAS_S3_PREFIX": "/meshes/"}).s3_prefix == "meshes"


@pytest.mark.parametrize("secret", ["whsec_***", "whsec_c2hvcnQ=", "whsec_not base64!", ""])
def test_a_webhook_secret_that_cannot_sign_fails_naming_the_variable(secret):
    """ORFEAS_WEBHOOK_SECRET must be usable (base64 after whsec_, 16+ bytes) when settings are built."""
    with pytest.raises(ConfigError) as info:
        Settings(webhook_secret=secret)
    assert info.value.field == "ORFEAS_WEBHOOK_SECRET"
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert Settings.from_env({"ORFEAS_WEBHOOK_SECRET": good}).webhook_secret == good
