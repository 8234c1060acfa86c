"""The pipeline's error tree, which is the contract's (`orfeas_contract.errors`): the worker and the
callback server return the same stable codes, so the tree lives where both can import it."""

from orfeas_contract.errors import (
    BackendUnavailable,
    ConfigError,
    InvalidInput,
    ModelUnavailable,
    OrfeasError,
    OutOfMemory,
    StageFailed,
    StageTimeout,
    StorageError,
)

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "InvalidInput",
    "ModelUnavailable",
    "OrfeasError",
    "OutOfMemory",
    "StageFailed",
    "StageTimeout",
    "StorageError",
]
