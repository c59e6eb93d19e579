"""xorjobs: queued, distributed training jobs for the classic XOR MLP experiments.

This core package is shared by every process (API, workers, CLI) and imports neither torch nor FastAPI.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xorjobs.client import Client

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> object:
    """``from xorjobs import Client``, imported on first use: the API and the workers import ``xorjobs``
    too, and need no HTTP client."""
    if name == "Client":
        from xorjobs.client import Client

        return Client
    raise AttributeError(f"module 'xorjobs' has no attribute {name!r}")
