"""xorjobs: queued, distributed training jobs for the classic XOR MLP experiments.

This core package is shared by every process (API, workers, CLI) and imports neither torch nor FastAPI.
"""

__version__ = "0.1.0"
