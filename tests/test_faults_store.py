"""Nothing lost or falsely failed when the store fails (issue 14 sections 1, 4 and 8).

Real `xorjobs worker` processes on private Redis servers, 3 s leases (``tests.test_faults``). The
store fails under them as it does in production:
- Postgres unreachable mid-sweep: the workers reach Postgres through a TCP proxy of this test's own,
  which drops every connection and refuses new ones for a while (an outage or a failover as a client
  sees it: "server closed the connection", then "connection refused");
- SQLite's write lock held by another process for longer than the busy timeout ("database is locked").
Every test then checks: each job ends in exactly one terminal state, none stays queued or running, and
each succeeded job has exactly its logged costs, written by its final attempt (``Cluster.check_invariants``).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.helpers import Cluster, Json, broker_messages, record_figure
from tests.services import XORJOBS, free_port, wait_until
from xorjobs.store import housekeeping, queries

STEPS = 3000  # ~1-2 s of nn training here: a sweep of a few dozen runs in well under a minute


class TcpProxy:
    """A TCP forwarder to ``target`` that a test can cut (drop every connection, refuse new ones)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown wakes a thread blocked in accept() (close alone lets it take one more).
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while this connection was being set up
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def postgres_behind_proxy(postgres_url: str) -> Iterator[tuple[str, str, TcpProxy]]:
    """(direct URL for the test, URL through the proxy for the workers, the proxy)."""
    parsed = make_url(postgres_url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    through = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield postgres_url, through, proxy
    proxy.cut()


def stuck(cluster: Cluster, sweep_id: str) -> dict[str, int]:
    counts: dict[str, int] = queries.sweep_status(cluster.url, sweep_id)["counts"]
    return counts


def finished_or_stuck(cluster: Cluster, sweep_id: str, timeout: float) -> Json:
    """The sweep's results once nothing is queued or running, or a failure naming what stayed."""
    try:
        cluster.wait_finished(sweep_id, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"jobs stranded: {stuck(cluster, sweep_id)}") from None
    return cluster.check_invariants(sweep_id, bit_exact_sample=2)


# --- Postgres goes away mid-sweep -------------------------------------------------------------------


def cut_postgres_mid_sweep(
    tmp_path: Path,
    postgres_behind_proxy: tuple[str, str, TcpProxy],
    broker_url: str,
    outage_seconds: float,
    jobs: int,
    cut_after: int = 3,
) -> str:
    """A sweep on two workers whose Postgres is cut for ``outage_seconds`` once ``cut_after`` jobs are
    done (0: before the sweep is submitted, so every delivery meets the outage before its claim)."""
    direct, through, proxy = postgres_behind_proxy
    cluster = Cluster(tmp_path, direct, broker_url)
    cluster.env["XORJOBS_DATABASE_URL"] = through
    try:
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        if cut_after == 0:
            proxy.cut()
            cut_at = time.monotonic()
        sweep_id, _ = cluster.submit(seeds=list(range(500, 500 + jobs)), steps=STEPS)  # the test's own URL
        if cut_after > 0:
            wait_until(lambda: stuck(cluster, sweep_id)["succeeded"] >= cut_after, 120, "jobs done")
            proxy.cut()
            cut_at = time.monotonic()
        time.sleep(max(0.0, outage_seconds - (time.monotonic() - cut_at)))
        proxy.restore()
        back_at = time.monotonic()
        results = finished_or_stuck(cluster, sweep_id, timeout=120)
        record_figure(
            f"postgres_outage_{outage_seconds:.0f}s_sweep_done_after_seconds",
            round(time.monotonic() - back_at, 2),
        )
        states = [job["state"] for job in results["jobs"]]
        assert states == ["succeeded"] * jobs, {
            job["id"]: job["error"] for job in results["jobs"] if job["state"] != "succeeded"
        }
        return "".join(worker.log() for worker in cluster.workers)
    finally:
        cluster.stop()


def test_postgres_unreachable_mid_sweep_loses_and_fails_nothing(
    tmp_path: Path,
    postgres_behind_proxy: tuple[str, str, TcpProxy],
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    """8 s: longer than a lease and many reap intervals, shorter than the runner's retry deadline."""
    cut_postgres_mid_sweep(tmp_path, postgres_behind_proxy, private_redis[0], outage_seconds=8, jobs=24)


@pytest.mark.slow
def test_postgres_down_past_the_retry_deadline_loses_and_fails_nothing(
    tmp_path: Path,
    postgres_behind_proxy: tuple[str, str, TcpProxy],
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    """45 s from before the submit: every delivery meets the outage before its claim and, past the
    runner's 30 s retry deadline, rejects its message back onto the queue (never an ack)."""
    logs = cut_postgres_mid_sweep(
        tmp_path, postgres_behind_proxy, private_redis[0], outage_seconds=45, jobs=6, cut_after=0
    )
    assert "message handed back to the queue" in logs


def test_a_store_down_past_the_deadline_rejects_the_message_back_onto_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task's side, in-process: an unreachable store ends in Reject(requeue=True), which Celery
    turns into the message put back on the queue, never an ack (with acks_late a raised error is acked)."""
    from celery.exceptions import Reject

    from xorjobs import queue
    from xorjobs.settings import Settings
    from xorjobs.worker import runner
    from xorjobs.worker.tasks import train_job

    unreachable = Settings(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    monkeypatch.setitem(queue._settings_of_app, train_job.app, unreachable)  # the app's explicit settings
    monkeypatch.setattr(runner, "BEFORE_CLAIM_DEADLINE_SECONDS", 1.0)  # 30 s in production
    with pytest.raises(Reject) as rejected:
        train_job.run("job-0123456789abcdef")
    assert rejected.value.requeue is True  # type: ignore[attr-defined]  # celery-types omits Reject.requeue


# --- SQLite's write lock held past the busy timeout --------------------------------------------------


def test_sqlite_write_lock_held_past_the_busy_timeout_fails_no_job(
    tmp_path: Path,
    sqlite_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    cluster = Cluster(tmp_path, sqlite_url, private_redis[0])
    try:
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        sweep_id, job_ids = cluster.submit(seeds=[600, 601], steps=2 * STEPS)  # one per worker
        cluster.wait_for_costs(job_ids[0])
        holder = sqlite3.connect(str(make_url(sqlite_url).database), timeout=60, isolation_level=None)
        holder.execute(
            "BEGIN IMMEDIATE"
        )  # a writer that stalls with the lock (the store's busy timeout: 30 s)
        time.sleep(36)
        holder.execute("COMMIT")
        holder.close()
        results = finished_or_stuck(cluster, sweep_id, timeout=120)
        states = [job["state"] for job in results["jobs"]]
        assert states == ["succeeded"] * 2, {
            job["id"]: job["error"] for job in results["jobs"] if job["state"] != "succeeded"
        }
    finally:
        cluster.stop()


# --- Supervision of the recovery process -------------------------------------------------------------


def recovery_process(worker_pid: int) -> psutil.Process | None:
    """The worker's spawned recovery process (multiprocessing's spawn command line), if it runs."""
    for child in psutil.Process(worker_pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if "multiprocessing.spawn" in " ".join(child.cmdline()) and child.status() != "zombie":
                return child
    return None


def test_killed_recovery_process_is_restarted_and_a_redis_restart_then_loses_nothing(
    tmp_path: Path,
    sqlite_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    url, restart = private_redis
    cluster = Cluster(tmp_path, sqlite_url, url)
    try:
        worker = cluster.start_worker("w1")
        first = wait_until(lambda: recovery_process(worker.pid), 30, "the recovery process")
        assert isinstance(first, psutil.Process)
        first.kill()
        worker.wait_for_log("restarting it", timeout=30)
        second = wait_until(
            lambda: (p := recovery_process(worker.pid)) is not None and p.pid != first.pid and p,
            30,
            "a new recovery process",
        )
        assert isinstance(second, psutil.Process) and second.is_running()
        assert worker.log().count("recovery process restarted") == 1
        # Only the restarted process can now notice that Redis lost every message.
        sweep_id, _ = cluster.submit(seeds=list(range(700, 708)), steps=STEPS)
        wait_until(lambda: stuck(cluster, sweep_id)["succeeded"] >= 2, 120, "2 jobs done")
        restart()
        results = finished_or_stuck(cluster, sweep_id, timeout=120)
        assert [job["state"] for job in results["jobs"]] == ["succeeded"] * 8
    finally:
        cluster.stop()


# --- Messages of jobs the store does not hold ----------------------------------------------------------


def test_messages_of_a_deleted_sweep_are_dropped_with_one_line(
    tmp_path: Path,
    sqlite_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    url, _ = private_redis
    cluster = Cluster(tmp_path, sqlite_url, url)
    try:
        sweep_id, _ = cluster.submit(seeds=list(range(200)), steps=STEPS)
        housekeeping.delete_sweep(sqlite_url, sweep_id, cancel_active=True)
        assert broker_messages(url) == 200
        worker = cluster.start_worker("w1")
        probe, _ = cluster.submit(seeds=[1], steps=200)  # behind the 200 dropped messages
        cluster.wait_finished(probe, timeout=60)
        wait_until(lambda: broker_messages(url) == 0, 30, "the queue to drain")
        log = worker.log()
        assert "UnknownJob" not in log and "Traceback" not in log
        assert 1 <= log.count("not in the store") + log.count("more message(s) of jobs no longer") <= 3
    finally:
        cluster.stop()


def test_a_worker_on_the_wrong_store_hands_messages_back_and_says_so_once(
    tmp_path: Path,
    sqlite_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    url, _ = private_redis
    right = Cluster(tmp_path, sqlite_url, url)
    (tmp_path / "elsewhere").mkdir()
    wrong = Cluster(tmp_path / "elsewhere", f"sqlite:///{tmp_path / 'other.db'}", url)
    try:
        sweep_id, _ = right.submit(seeds=list(range(8)), steps=STEPS)
        stray = wrong.start_worker("wrong")
        stray.wait_for_log("refusing to consume", timeout=60)
        time.sleep(3)  # it would have eaten the queue by now (about 100 messages a second)
        assert broker_messages(url) >= 8  # nothing of the right store's was acked
        assert stray.log().count("refusing to consume") == 1
        right.start_worker("right")
        results = finished_or_stuck(right, sweep_id, timeout=120)
        assert [job["state"] for job in results["jobs"]] == ["succeeded"] * 8
    finally:
        wrong.stop()
        right.stop()


def test_retry_requeues_stranded_queued_jobs(
    tmp_path: Path,
    sqlite_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    """A queued job whose message is gone (flushed here, as by a failed delivery) goes out again on retry."""
    url, _ = private_redis
    cluster = Cluster(tmp_path, sqlite_url, url)
    try:
        sweep_id, _ = cluster.submit(seeds=list(range(5)), steps=200)
        redis.Redis.from_url(url).flushdb()
        retried = subprocess.run(
            [XORJOBS, "retry", sweep_id], env=cluster.env, capture_output=True, text=True, timeout=60
        )
        assert retried.returncode == 0 and "re-queued 5 job(s)" in retried.stdout, retried.stdout
        assert broker_messages(url) == 5
    finally:
        cluster.stop()


def test_settings_built_in_code_reach_the_spawned_recovery_process(
    tmp_path: Path,
    sqlite_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    """No XORJOBS_* variable is set here: the recovery process can only know the store and the broker
    from the Settings object it was given."""
    from xorjobs.settings import Settings
    from xorjobs.worker.recovery import start_recovery_process

    url, _ = private_redis
    settings = Settings(
        home=tmp_path / "home", database_url=sqlite_url, broker_url=url, reap_interval_seconds=0.5
    )
    no_broker = Cluster(tmp_path, sqlite_url, f"redis://127.0.0.1:{free_port()}/0")
    no_broker.submit(seeds=[1, 2, 3], steps=200)  # its broker is unreachable: the jobs wait in the outbox
    process = start_recovery_process(settings)
    try:
        wait_until(lambda: broker_messages(url) == 3, 60, "the recovery process to publish the outbox")
    finally:
        process.terminate()
        process.join(10)
