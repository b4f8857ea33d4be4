"""What the worker has done, for Prometheus's `/metrics`, with `prometheus_client`.

Jobs by status and failures by error code (every label at zero from the start, so
a rate over a fresh pod is 0, not absent), seconds per stage as histograms (p95
across pods is a `histogram_quantile` over their buckets), audio and synthesis
seconds (RTF is their ratio), retries, jobs in flight, build info, the process's
own metrics, and at scrape time the queue's depth and the accelerator's memory.

Each `Metrics` has its own registry, never the global one: tests and benchmarks
build several workers in one process. The names are in README's metrics section
and queried by docs/grafana-dashboard.json (tests/test_metrics.py checks both).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from processor import __version__
from processor.errors import CATALOGUE

PREFIX = "f5batch"
# Keys of a job's result.json timings observed as stage durations; a new timing is one more name here.
STAGES = ("queued", "fetch", "asr", "synth", "write")
VERDICTS = ("within", "over")  # a take of the listening check: within max_wer (or none given), or over it
# How a job's lease ended: the `metric` of every outcome that ends one (tests/test_metrics.py checks outcomes.py).
STATUSES = ("succeeded", "failed", "skipped", "redelivered", "released")
# The codes a failed job's result.json can carry.
FAILURE_CODES = tuple(sorted(code for code, cls in CATALOGUE.items() if cls.where == "result"))
# A TTS job's stages take from a few milliseconds (a cached voice) to the 30-minute job limit.
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
                 1800.0, float("inf"))
DEPTH_CACHE_S = 10.0  # a scrape every few seconds must not become an SQS call every few seconds

QueueDepth = Callable[[], int | None]
AcceleratorMemory = Callable[[], dict[str, int]]


class Metrics:
    """The worker calls job_started, job_ended and retried; each outcome's `count()` calls job_ended."""

    def __init__(self, *, queue_depth: QueueDepth | None = None, accelerator_memory: AcceleratorMemory | None = None,
                 model: str = "", device: str = "") -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.jobs = Counter(f"{PREFIX}_jobs", "Jobs ended, by status.", ["status"], registry=registry)
        self.failures = Counter(f"{PREFIX}_job_failures", "Jobs failed, by error code (as in result.json).",
                                ["code"], registry=registry)
        self.stage_seconds = Histogram(f"{PREFIX}_stage_seconds", "Seconds a job spent in each stage.", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=registry)
        self.audio_seconds = Counter(f"{PREFIX}_audio_seconds", "Seconds of audio produced by succeeded jobs.",
                                     registry=registry)
        self.synthesis_seconds = Counter(
            f"{PREFIX}_synthesis_seconds", "Seconds of synthesis behind that audio (RTF: this over audio seconds).",
            registry=registry)
        self.retries = Counter(f"{PREFIX}_retries", "Transient failures retried within a job.", registry=registry)
        self.check_takes = Counter(f"{PREFIX}_check_takes", "Takes of text chunks the listening check heard, by "
                                   "verdict (over: above max_wer, so another take or a failed check).",
                                   ["verdict"], registry=registry)
        self.in_flight = Gauge(f"{PREFIX}_jobs_in_flight", "Jobs claimed and not yet finished.", registry=registry)
        self.model_loads = Counter(f"{PREFIX}_model_loads", "Models loaded, by model (the first at start-up, "
                                   "others when a manifest's \"model\" asks).", ["model"], registry=registry)
        self.model_unloads = Counter(f"{PREFIX}_model_unloads", "Models unloaded to make room for another, by model.",
                                     ["model"], registry=registry)
        self.models_loaded = Gauge(f"{PREFIX}_models_loaded", "Models loaded now.", registry=registry)
        Info(f"{PREFIX}_build", "The worker's version, model and device.", registry=registry).info(
            {"version": __version__, "model": model, "device": device})
        for status in STATUSES:
            self.jobs.labels(status)
        for code in FAILURE_CODES:
            self.failures.labels(code)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for verdict in VERDICTS:
            self.check_takes.labels(verdict)
        if model:
            self.model_loads.labels(model)
            self.model_unloads.labels(model)
        registry.register(Scraped(queue_depth, accelerator_memory))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def job_started(self) -> None:
        self.in_flight.inc()

    def job_ended(self, status: str, timings: Mapping[str, float] | None = None, audio_s: float = 0.0,
                  code: str | None = None) -> None:
        """`status`: one of STATUSES; `code`: a failed job's error code."""
        self.in_flight.dec()
        self.jobs.labels(status).inc()
        if code is not None:
            self.failures.labels(code).inc()
        timings = timings or {}
        for stage in STAGES:
            if timings.get(stage):  # a stage the job never reached is not a zero-second one
                self.stage_seconds.labels(stage).observe(timings[stage])
        if audio_s:
            self.audio_seconds.inc(audio_s)
            self.synthesis_seconds.inc(timings.get("synth", 0.0))

    def retried(self) -> None:
        self.retries.inc()

    def heard(self, passed: bool) -> None:
        """One take of one text chunk, heard by the listening check."""
        self.check_takes.labels("within" if passed else "over").inc()

    def model_loaded(self, model: str, loaded: int) -> None:
        """`model` was loaded; `loaded` models are loaded now."""
        self.model_loads.labels(model).inc()
        self.models_loaded.set(loaded)

    def model_unloaded(self, model: str, loaded: int) -> None:
        self.model_unloads.labels(model).inc()
        self.models_loaded.set(loaded)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Scraped:
    """What is read when Prometheus scrapes: the queue's depth (cached) and the accelerator's memory.

    Both families are always there, without samples when unknown (a folder inbox, a CPU), so a dashboard's
    query names a metric that exists.
    """

    def __init__(self, queue_depth: QueueDepth | None, accelerator_memory: AcceleratorMemory | None) -> None:
        self.queue_depth = queue_depth
        self.accelerator_memory = accelerator_memory
        self._lock = threading.Lock()
        self._depth: tuple[float, int | None] = (-DEPTH_CACHE_S, None)

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(f"{PREFIX}_queue_depth_messages", "Messages waiting in the queue (approximate).")
        value = self._queue_depth()
        if value is not None:
            depth.add_metric([], value)
        yield depth
        memory = GaugeMetricFamily(f"{PREFIX}_accelerator_memory_bytes", "Accelerator memory, by kind.",
                                   labels=["kind"])
        for kind, value in sorted(self._memory().items()):
            memory.add_metric([kind], value)
        yield memory

    def _queue_depth(self) -> int | None:
        if self.queue_depth is None:
            return None
        with self._lock:  # concurrent scrapes share one SQS call
            at, value = self._depth
            if time.monotonic() - at > DEPTH_CACHE_S:
                try:
                    value = self.queue_depth()
                except Exception:  # a scrape must answer even when the queue does not
                    value = None
                self._depth = (time.monotonic(), value)
            return value

    def _memory(self) -> dict[str, int]:
        if self.accelerator_memory is None:
            return {}
        try:
            return self.accelerator_memory()
        except Exception:  # a scrape must answer even when the driver does not
            return {}


def cuda_memory(device: str) -> AcceleratorMemory | None:
    if not device.startswith("cuda"):
        return None

    def read() -> dict[str, int]:
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return {"allocated": torch.cuda.memory_allocated(device), "reserved": torch.cuda.memory_reserved(device),
                "free": free, "total": total}

    return read
