"""The Python client: ``from xorjobs import Client`` (see ``xorjobs.client.client``).

Works on the base install (HTTP only); the in-process mode imports the store and Celery when first used.
"""

from xorjobs.client.client import Client, SweepHandle, backend_for
from xorjobs.client.protocol import Backend
from xorjobs.client.records import Job, Summary, SweepInfo, SweepStatus, VerifyReport

__all__ = [
    "Backend",
    "Client",
    "Job",
    "Summary",
    "SweepHandle",
    "SweepInfo",
    "SweepStatus",
    "VerifyReport",
    "backend_for",
]
