"""All pipeline and worker settings, read once from the environment into one frozen object.

Every variable name is a constant below; a malformed value fails at start with ConfigError naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orfeas.backend_names import AUTO_SHAPES, BACKGROUNDS, TEXTURES
from orfeas.errors import ConfigError
from orfeas_contract.envvars import (
    read_bool,
    read_choice,
    read_float,
    read_int,
    read_optional,
    read_str,
)
from orfeas_contract.webhook_signing import ALLOW_PRIVATE_WEBHOOKS, WEBHOOK_SECRET, check_webhook_secret

# Pipeline
OUTPUT_DIR = "ORFEAS_OUTPUT_DIR"
DEFAULT_SIZE_MM = "ORFEAS_DEFAULT_SIZE_MM"
MAX_IMAGE_BYTES = "ORFEAS_MAX_IMAGE_BYTES"
MAX_IMAGE_PIXELS = "ORFEAS_MAX_IMAGE_PIXELS"
FETCH_TIMEOUT_S = "ORFEAS_FETCH_TIMEOUT_S"
INPUT_BUCKETS = "ORFEAS_INPUT_BUCKETS"
JOB_TIMEOUT_S = "ORFEAS_JOB_TIMEOUT_S"
STAGE_TIMEOUT_S = "ORFEAS_STAGE_TIMEOUT_S"
AUTO_SHAPE_BACKEND = "ORFEAS_AUTO_SHAPE_BACKEND"
BACKGROUND_BACKEND = "ORFEAS_BACKGROUND_BACKEND"
TEXTURE_BACKEND = "ORFEAS_TEXTURE_BACKEND"
# Worker
CONCURRENCY = "ORFEAS_CONCURRENCY"
LOG_LEVEL = "ORFEAS_LOG_LEVEL"
# Set by RunPod on its workers: the endpoint progress updates go to (absent in local runs).
RUNPOD_WEBHOOK_POST_OUTPUT = "RUNPOD_WEBHOOK_POST_OUTPUT"
# Storage (RunPod's own names for the bucket credentials)
BUCKET_ENDPOINT_URL = "BUCKET_ENDPOINT_URL"
BUCKET_ACCESS_KEY_ID = "BUCKET_ACCESS_KEY_ID"
BUCKET_SECRET_ACCESS_KEY = "BUCKET_SECRET_ACCESS_KEY"
S3_BUCKET = "ORFEAS_S3_BUCKET"
S3_PREFIX = "ORFEAS_S3_PREFIX"
S3_REGION = "ORFEAS_S3_REGION"
PRESIGN_SECONDS = "ORFEAS_PRESIGN_SECONDS"
# GPU models
MODEL_DIR = "ORFEAS_MODEL_DIR"
HF_HOME = "HF_HOME"
HF_HUB_OFFLINE = "HF_HUB_OFFLINE"
DEVICE = "ORFEAS_DEVICE"
DTYPE = "ORFEAS_DTYPE"
EAGER_LOAD = "ORFEAS_EAGER_LOAD"
TORCH_COMPILE = "ORFEAS_TORCH_COMPILE"
FLASHVDM = "ORFEAS_FLASHVDM"
MODEL_RESIDENCY = "ORFEAS_MODEL_RESIDENCY"
TEXT_TO_IMAGE_MODEL = "ORFEAS_TEXT_TO_IMAGE_MODEL"
SHAPE_MODEL = "ORFEAS_SHAPE_MODEL"
PAINT_MODEL = "ORFEAS_PAINT_MODEL"
SEGMENTATION_MODEL = "ORFEAS_SEGMENTATION_MODEL"

RUNPOD_VOLUME = Path("/runpod-volume")
_LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})


def _default_hf_home() -> str:
    # On RunPod the network volume outlives workers: keep the model cache there when it is mounted.
    if RUNPOD_VOLUME.is_dir():
        return str(RUNPOD_VOLUME / "huggingface")
    return str(Path.home() / ".cache" / "huggingface")


_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def parse_input_buckets(raw: str | None) -> tuple[str, ...]:
    """ORFEAS_INPUT_BUCKETS: comma-separated `bucket` or `bucket/prefix`; none by default."""
    if raw is None:
        return ()
    allowed: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        bucket, _, prefix = item.partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET_NAME.match(bucket):
            raise ConfigError(f"not an S3 bucket name: {bucket!r}", field=INPUT_BUCKETS)
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ConfigError(f"a prefix of plain path segments, not {prefix!r}", field=INPUT_BUCKETS)
        allowed.append(f"{bucket}/{prefix}" if prefix else bucket)
    return tuple(allowed)


@dataclass(frozen=True)
class Settings:
    """Validated settings; build with `Settings.from_env()` (or pass a mapping in tests)."""

    output_dir: Path = Path("output")
    default_size_mm: float = 100.0
    max_image_bytes: int = 20 * 1024 * 1024
    # 40 MP: larger than any phone photo, far below a 20k x 20k decompression bomb (400 MP).
    max_image_pixels: int = 40_000_000
    fetch_timeout_s: float = 10.0
    # s3:// pictures only from these buckets (or bucket/prefix); none by default.
    input_buckets: tuple[str, ...] = ()
    job_timeout_s: float = 600.0
    stage_timeout_s: float = 300.0
    auto_shape_backend: str = "weights_free"
    background_backend: str = "classic"
    texture_backend: str = "vertex"

    concurrency: int = 1
    webhook_secret: str | None = None
    allow_private_webhooks: bool = False
    log_level: str = "INFO"  # the worker's (handler.py); DEBUG shows boto3's and urllib3's requests
    # RunPod's job endpoint for progress updates; None (local runs): progress goes to webhooks only.
    runpod_progress_url: str | None = field(default=None, repr=False)

    bucket_endpoint_url: str | None = None
    bucket_access_key_id: str | None = None
    bucket_secret_access_key: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "orfeas"
    s3_region: str | None = None
    presign_seconds: int = 3600

    model_dir: Path | None = None
    hf_home: str = field(default_factory=_default_hf_home)
    hf_hub_offline: bool = False
    device: str = "auto"
    dtype: str = "auto"
    eager_load: bool = False
    torch_compile: bool = False
    flashvdm: bool = False
    # Shape model on the device through the texture stage: auto (if paint fits beside it,
    # orfeas/gpu/memory_plan.py), keep, or offload (to host memory, back for the next shape).
    model_residency: str = "auto"
    text_to_image_model: str | None = None
    shape_model: str = "tencent/Hunyuan3D-2"
    paint_model: str | None = None
    segmentation_model: str | None = None

    def __post_init__(self) -> None:
        check_webhook_secret(self.webhook_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        d = cls()  # each default is written once, on its field
        model_dir = read_optional(e, MODEL_DIR)
        return cls(
            output_dir=Path(read_str(e, OUTPUT_DIR, str(d.output_dir))),
            default_size_mm=read_float(e, DEFAULT_SIZE_MM, d.default_size_mm, lo=1.0, hi=2000.0),
            max_image_bytes=read_int(e, MAX_IMAGE_BYTES, d.max_image_bytes, lo=1024),
            max_image_pixels=read_int(e, MAX_IMAGE_PIXELS, d.max_image_pixels, lo=64 * 64),
            fetch_timeout_s=read_float(e, FETCH_TIMEOUT_S, d.fetch_timeout_s, lo=0.1, hi=300.0),
            input_buckets=parse_input_buckets(read_optional(e, INPUT_BUCKETS)),
            job_timeout_s=read_float(e, JOB_TIMEOUT_S, d.job_timeout_s, lo=1.0),
            stage_timeout_s=read_float(e, STAGE_TIMEOUT_S, d.stage_timeout_s, lo=1.0),
            auto_shape_backend=read_choice(
                e, AUTO_SHAPE_BACKEND, d.auto_shape_backend, frozenset(AUTO_SHAPES)
            ),
            background_backend=read_choice(
                e, BACKGROUND_BACKEND, d.background_backend, frozenset(BACKGROUNDS)
            ),
            texture_backend=read_choice(e, TEXTURE_BACKEND, d.texture_backend, frozenset(TEXTURES)),
            concurrency=read_int(e, CONCURRENCY, d.concurrency, lo=1, hi=64),
            webhook_secret=read_optional(e, WEBHOOK_SECRET),
            allow_private_webhooks=read_bool(e, ALLOW_PRIVATE_WEBHOOKS, d.allow_private_webhooks),
            log_level=read_choice(
                e, LOG_LEVEL, d.log_level.lower(), frozenset({"debug", "info", "warning", "error"})
            ).upper(),
            runpod_progress_url=read_optional(e, RUNPOD_WEBHOOK_POST_OUTPUT),
            bucket_endpoint_url=read_optional(e, BUCKET_ENDPOINT_URL),
            bucket_access_key_id=read_optional(e, BUCKET_ACCESS_KEY_ID),
            bucket_secret_access_key=read_optional(e, BUCKET_SECRET_ACCESS_KEY),
            s3_bucket=read_optional(e, S3_BUCKET),
            s3_prefix=read_str(e, S3_PREFIX, d.s3_prefix).strip("/"),
            s3_region=read_optional(e, S3_REGION),
            presign_seconds=read_int(e, PRESIGN_SECONDS, d.presign_seconds, lo=1, hi=7 * 24 * 3600),
            model_dir=Path(model_dir) if model_dir else None,
            hf_home=read_optional(e, HF_HOME) or d.hf_home,
            hf_hub_offline=read_bool(e, HF_HUB_OFFLINE, d.hf_hub_offline),
            device=read_choice(e, DEVICE, d.device, frozenset({"auto", "cuda", "cpu"})),
            dtype=read_choice(e, DTYPE, d.dtype, frozenset({"auto", "fp16", "bf16", "fp32"})),
            eager_load=read_bool(e, EAGER_LOAD, d.eager_load),
            torch_compile=read_bool(e, TORCH_COMPILE, d.torch_compile),
            flashvdm=read_bool(e, FLASHVDM, d.flashvdm),
            model_residency=read_choice(
                e, MODEL_RESIDENCY, d.model_residency, frozenset({"auto", "keep", "offload"})
            ),
            text_to_image_model=read_optional(e, TEXT_TO_IMAGE_MODEL),
            shape_model=read_str(e, SHAPE_MODEL, d.shape_model),
            paint_model=read_optional(e, PAINT_MODEL),
            segmentation_model=read_optional(e, SEGMENTATION_MODEL),
        )
