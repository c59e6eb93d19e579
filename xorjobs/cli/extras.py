"""Which install extra brings a module, so a command that needs a role's packages says what to install.

The base install is the HTTP client (README, "Install"); commands that work on the store or train in
this process need the `api`, `worker` or `all` extra. Without it they would end in an ImportError
traceback.
"""

from __future__ import annotations

_EXTRA_OF_MODULE = {
    "sqlalchemy": "all",
    "alembic": "all",
    "psycopg": "all",
    "celery": "all",
    "kombu": "all",
    "redis": "all",
    "fastapi": "api",
    "starlette": "api",
    "uvicorn": "api",
    "matplotlib": "api",
    "torch": "worker",
    "numpy": "worker",
}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install, or None when the module is not one of our extras'."""
    module = (error.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (
        f"this command needs the {module!r} package, which this install lacks: "
        f"pip install 'xorjobs[{extra}]' (or set XORJOBS_API_URL to work through an API)"
    )
