"""Time in the store: the process's UTC clock, for what only people read (ages, prune cut-offs)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
