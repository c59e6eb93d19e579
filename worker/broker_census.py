"""Which jobs have a message on the broker: a census of a Redis queue, to find queued jobs left with none.

A queued job can lose its message on paths the outbox (``published_at`` NULL) never sees: a delivery
acked after a store error (issue 14 section 1), a Redis restart without persistence, a relay that died
between claiming a row and publishing it. The store alone cannot tell such a job from one waiting its
turn in a long queue, and a time bound alone would either wait too long or flood a long queue with
duplicates. The broker can tell: a job that has a message has it either waiting on the queue's list or
delivered and unacknowledged in kombu's ``unacked`` hash (kombu/transport/redis.py: delivery moves a
message from the list to that hash atomically enough for us; an ack deletes it).

Cost: ``counts`` is two O(1) commands per pass. The full read (``job_ids_present``) runs only when the
store has more published queued jobs than the broker holds messages (proof that some are missing), or
when a published queued job is older than a bound; it reads at most ``SCAN_LIMIT`` messages.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import TYPE_CHECKING

from xorjobs.defaults import JOB_ID_PREFIX
from xorjobs.settings import BROKER_SCHEMES

if TYPE_CHECKING:
    import redis

# kombu's Redis transport keys (kombu.transport.redis.Channel): the hash of delivered, unacked messages
# and its index scored by delivery time; a queue's list for priority 0 is the queue's own name, the
# others are named with this separator and the priority step.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
SCAN_LIMIT = 50_000
"""Most messages one census reads (about 1 KB each): a longer backlog is read once it has shrunk."""
_CHUNK = 1000
_JOB_ID = re.compile(re.escape(JOB_ID_PREFIX) + r"[0-9a-f]{16}")


def redis_client(broker_url: str | None) -> redis.Redis | None:
    """A client for a Redis broker, or None for any other transport (the embedded queue)."""
    if not broker_url or not broker_url.startswith(tuple(f"{scheme}://" for scheme in BROKER_SCHEMES)):
        return None
    import redis

    return redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def message_count(client: redis.Redis, queue: str) -> int:
    """Messages that may belong to ``queue``: waiting on it, plus every unacked one (of any queue)."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.llen(key)
    pipe.hlen(UNACKED_KEY)
    return sum(int(count) for count in pipe.execute())


def job_ids_present(client: redis.Redis, queue: str, stale_after_seconds: float) -> set[str]:
    """Ids of the jobs that have a message waiting on ``queue`` or delivered and not yet acked.

    A delivered message older than ``stale_after_seconds`` does not count: its consumer had time to
    claim the job or hand the message back, so it is dead or stuck (kombu would restore the message
    only after the visibility timeout, a day).
    """
    present: set[str] = set()
    read = 0
    for key in queue_keys(queue):
        start = 0
        while read < SCAN_LIMIT:
            chunk = client.lrange(key, start, start + _CHUNK - 1)
            if not chunk:
                break
            for raw in chunk:
                present |= _job_ids_in(raw)
            read += len(chunk)
            start += _CHUNK
    cutoff = time.time() - stale_after_seconds
    fresh = {
        tag.decode() if isinstance(tag, bytes) else str(tag)
        for tag in client.zrangebyscore(UNACKED_INDEX_KEY, cutoff, "+inf")
    }
    for tag, raw in client.hgetall(UNACKED_KEY).items():
        name = tag.decode() if isinstance(tag, bytes) else str(tag)
        if name in fresh:
            present |= _job_ids_in(raw)
    return present


def _job_ids_in(raw: bytes | str) -> set[str]:
    """Job ids named in a stored kombu message (its ``argsrepr`` header, or its base64 JSON body)."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    found = set(_JOB_ID.findall(text))
    if found:
        return found
    try:
        stored = json.loads(text)
        message = stored[0] if isinstance(stored, list) else stored  # unacked entries: [message, ex, rk]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode(errors="replace")
        return set(_JOB_ID.findall(str(body)))
    except (ValueError, KeyError, TypeError, IndexError):
        return set()
