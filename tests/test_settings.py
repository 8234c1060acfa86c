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
    """ORFEAS_WEBHOOK_SECRET must be usable (base64, 24+ bytes of key) when settings are built."""
    with pytest.raises(ConfigError) as info:
        Settings(webhook_secret=secret)
    assert info.value.field == "ORFEAS_WEBHOOK_SECRET"
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert Settings.from_env({"ORFEAS_WEBHOOK_SECRET": good}).webhook_secret == good


def test_input_buckets_are_listed_explicitly_and_checked():
    """ORFEAS_INPUT_BUCKETS: none by default; `bucket` and `bucket/prefix` entries, slashes trimmed;
    a bad bucket name or a `..` prefix fails naming the variable."""
    assert Settings.from_env({}).input_buckets == ()
    given = {"ORFEAS_INPUT_BUCKETS": "uploads, media/inputs/ ,,photos/a/b"}
    assert Settings.from_env(given).input_buckets == ("uploads", "media/inputs", "photos/a/b")
    for bad in ("Bad_Bucket", "media/../secrets", "x"):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"ORFEAS_INPUT_BUCKETS": bad})
        assert info.value.field == "ORFEAS_INPUT_BUCKETS"


def test_worker_log_level():
    """ORFEAS_LOG_LEVEL picks the worker's level (INFO by default); an unknown one names the variable."""
    assert Settings.from_env({}).log_level == "INFO"
    assert Settings.from_env({"ORFEAS_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ORFEAS_LOG_LEVEL": "loud"})
    assert info.value.field == "ORFEAS_LOG_LEVEL"


def test_an_empty_environment_gives_the_fields_defaults():
    """Every default is the dataclass field's: from_env of nothing equals Settings()."""
    assert Settings.from_env({}) == Settings()
