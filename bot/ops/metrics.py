"""Prometheus metrics: what an operator graphs and alerts on.

The metrics live in a registry owned by one :class:`Metrics` object that the entry point creates
and passes in (no module-level globals), so tests read exact values from a fresh registry.

Every label has a fixed set of values: a label per guild (thousands of servers) or per raw
provider code (whatever a compatible server invents) would grow Prometheus without bound and
name servers to whoever scrapes. Per-server spend is in ``/usage``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.providers.errors import OPERATOR_CODES, SAFETY_CODES, ProviderError

WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
RUN_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300)
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

#: Provider codes counted under their own name; any other code counts as "other".
KNOWN_ERROR_CODES = OPERATOR_CODES | SAFETY_CODES | {"rate_limit_exceeded", "server_error"}
OTHER = "other"


def _error_keys(cls: type[ProviderError] = ProviderError) -> set[str]:
    """The keys of every provider error class: what a failure without a code is counted as."""
    keys = {cls.key}
    for sub in cls.__subclasses__():
        keys |= _error_keys(sub)
    return keys


def provider_error_label(code: str) -> str:
    """A provider code, or an error class key when the answer had no code, as a bounded label."""
    if code in KNOWN_ERROR_CODES or code in _error_keys():
        return code
    return OTHER


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("imagebot_jobs", "Jobs finished, by outcome", ["outcome"], registry=r)
        self.queue_depth = Gauge("imagebot_queue_depth", "Jobs waiting in the queue", registry=r)
        self.running = Gauge("imagebot_jobs_running", "Jobs running now", registry=r)
        self.wait_seconds = Histogram(
            "imagebot_job_wait_seconds",
            "Time from queued to started",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.run_seconds = Histogram(
            "imagebot_job_run_seconds",
            "Time from started to finished",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.provider_latency = Histogram(
            "imagebot_provider_request_seconds",
            "Image API request time, retries included",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "imagebot_provider_errors", "Image API failures, by error kind", ["code"], registry=r
        )
        self.images = Counter("imagebot_images_delivered", "Images made and delivered", registry=r)
        self.spend = Counter("imagebot_spend_usd", "Money spent on the image API", registry=r)
        self.spend_cap_refusals = Counter(
            "imagebot_spend_cap_refusals",
            "Requests refused by the operator's total spend cap, by period (day, month)",
            ["period"],
            registry=r,
        )

    def provider_error(self, code: str) -> None:
        self.provider_errors.labels(code=provider_error_label(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
