"""The ``xorjobs`` command line (typer + rich)."""

from xorjobs.cli.app import app, main

__all__ = ["app", "main"]
