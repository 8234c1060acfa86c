"""ORFEAS: picture (or prompt) to a printable, viewable 3D mesh.

Light to import: numpy, Pillow, trimesh and the GPU stacks load only when a stage needs them.
"""

from orfeas.errors import InvalidInput, OrfeasError
from orfeas.request import JobRequest, parse_request
from orfeas.settings import Settings
from orfeas.status import JobStatus

__version__ = "0.1.0"

__all__ = [
    "InvalidInput",
    "JobRequest",
    "JobStatus",
    "OrfeasError",
    "Settings",
    "__version__",
    "parse_request",
]
