"""ORFEAS: picture (or prompt) to a printable, viewable 3D mesh.

Light to import: `import orfeas` (and so every `from orfeas.x import …`, which runs this file
first) loads nothing beyond the standard library. The names below resolve on first use: the
request schema pulls in pydantic (about 70 ms), which the callback server never needs; numpy,
Pillow, trimesh and the GPU stacks load only when a stage needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "InvalidInput": "orfeas.errors",
    "OrfeasError": "orfeas.errors",
    "JobRequest": "orfeas.request",
    "parse_request": "orfeas.request",
    "Settings": "orfeas.settings",
    "JobStatus": "orfeas_contract.status",
}

__all__ = [
    "InvalidInput",
    "JobRequest",
    "JobStatus",
    "OrfeasError",
    "Settings",
    "__version__",
    "parse_request",
]

if TYPE_CHECKING:
    from orfeas.errors import InvalidInput, OrfeasError
    from orfeas.request import JobRequest, parse_request
    from orfeas.settings import Settings
    from orfeas_contract.status import JobStatus


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orfeas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value
