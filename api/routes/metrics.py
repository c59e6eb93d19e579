"""``GET /metrics``: the fleet in the Prometheus text format (``prometheus-client``), behind the API token.

Every number is read from the store at scrape time (a collector, not counters kept in this process):
the store is what every host writes, so any API replica serves the same, complete numbers, and an API
restart loses nothing. The counters (``*_total``) are counts of rows, so deleting or pruning sweeps
lowers them; Prometheus's ``rate()`` reads a drop as a counter reset.

Queue depth is the store's count of queued jobs per queue, not the broker's list length: a pack leaves
the messages of its companions on the broker (they are skipped when delivered), a lost message leaves
a queued job with none, and the embedded queue has no list to measure; the store knows what is waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from xorjobs.api.deps import ServiceDep, reject_unknown_query
from xorjobs.api.schemas import Queue, text_response
from xorjobs.defaults import JOB_STATES, TERMINAL_STATES, JobState
from xorjobs.store.fleet_metrics import Histogram, job_counts, job_duration_histograms, pack_histograms
from xorjobs.store.recovery_events import recovery_counts
from xorjobs.store.workers import worker_counts

router = APIRouter(tags=["metrics"], dependencies=[Depends(reject_unknown_query)])

DURATION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)
"""Seconds. A 10,001-step job trains in 1-7 s here, a pack of 512 in minutes, and the worker's time
limit (6 h by default) is the longest anything runs."""
PACK_SIZE_BUCKETS = (1.0, 2.0, 8.0, 32.0, 128.0, 512.0, 2048.0, 5000.0)
"""Jobs per pack, up to the largest XORJOBS_PACK_SIZE allowed."""


class StoreCollector(Collector):
    """Reads the store on each ``collect`` (each scrape)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def collect(self) -> Iterator[Metric]:
        counts = job_counts(self._url)
        jobs = GaugeMetricFamily(
            "xorjobs_jobs", "Jobs in the store by state and queue", labels=["state", "queue"]
        )
        depth = GaugeMetricFamily(
            "xorjobs_queue_depth", "Queued jobs waiting per queue (the store's count)", labels=["queue"]
        )
        finished = CounterMetricFamily(
            "xorjobs_jobs_finished",
            "Jobs that reached a terminal state (rate() gives jobs per second)",
            labels=["state"],
        )
        # Every queue the API knows, zeros included (an alert on depth needs a 0, not an absent series).
        queues = sorted(set(get_args(Queue)) | {queue for _, queue, _ in counts})
        by_key = {(state, queue): count for state, queue, count in counts}
        for queue in queues:
            for state in JOB_STATES:
                jobs.add_metric([state, queue], by_key.get((state, queue), 0))
            depth.add_metric([queue], by_key.get((JobState.QUEUED, queue), 0))
        for state in JOB_STATES:
            if state in TERMINAL_STATES:
                finished.add_metric([state], sum(by_key.get((state, queue), 0) for queue in queues))
        yield from (jobs, depth, finished)

        workers = GaugeMetricFamily("xorjobs_workers", "Registered workers by state", labels=["state"])
        for worker_state, number in worker_counts(self._url).items():
            workers.add_metric([worker_state.value], number)
        yield workers

        recovery = CounterMetricFamily(
            "xorjobs_recovery_actions",
            "What the workers' recovery did, on every host: requeued, republished, failed_out_of_attempts",
            labels=["action"],
        )
        for action, number in recovery_counts(self._url).items():
            recovery.add_metric([action.value], number)
        yield recovery

        job_durations = HistogramMetricFamily(
            "xorjobs_job_duration_seconds",
            "Claim to result of each job that succeeded or failed (the database's clock)",
            labels=["variant"],
        )
        for variant, histogram in sorted(job_duration_histograms(self._url, DURATION_BUCKETS).items()):
            job_durations.add_metric([variant], _buckets(histogram), histogram.sum)
        yield job_durations

        pack_durations = HistogramMetricFamily(
            "xorjobs_pack_duration_seconds",
            "First claim to last result of each pack one training process ran (a solo job is a pack of 1)",
            labels=["variant"],
        )
        pack_sizes = HistogramMetricFamily(
            "xorjobs_pack_size", "Jobs per pack (a solo job is a pack of 1)", labels=["variant"]
        )
        durations, sizes = pack_histograms(self._url, DURATION_BUCKETS, PACK_SIZE_BUCKETS)
        for variant, histogram in sorted(durations.items()):
            pack_durations.add_metric([variant], _buckets(histogram), histogram.sum)
        for variant, histogram in sorted(sizes.items()):
            pack_sizes.add_metric([variant], _buckets(histogram), histogram.sum)
        yield from (pack_durations, pack_sizes)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative bucket counts, ``+Inf`` last, as prometheus-client's histogram families take them."""
    pairs = [
        (repr(bound), float(count)) for bound, count in zip(histogram.bounds, histogram.buckets, strict=True)
    ]
    return [*pairs, ("+Inf", float(histogram.count))]


@router.get(
    "/metrics",
    summary="Prometheus metrics: jobs, queues, workers, durations, recovery actions",
    response_class=Response,
    responses=text_response(CONTENT_TYPE_PLAIN_0_0_4),
)
def metrics(service: ServiceDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(service.ready().url))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
