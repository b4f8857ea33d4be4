"""What the worker has done, in Prometheus's text format, for `/metrics`.

A handful of counters and sums, so no client library: jobs by status, seconds
per stage (fetch, synth, write), audio seconds produced, synthesis seconds (RTF
is their ratio), retries, jobs in flight, and at scrape time the queue's depth
and the accelerator's memory.
https://prometheus.io/docs/instrumenting/exposition_formats/
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

STAGES = ("fetch", "synth", "write")
PREFIX = "f5batch"
DEPTH_CACHE_S = 10.0  # a scrape every few seconds must not become an SQS call every few seconds


@dataclass
class Metrics:
    jobs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    stage_count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    audio_seconds: float = 0.0
    retries: int = 0
    in_flight: int = 0
    queue_depth: Callable[[], int | None] | None = None
    accelerator_memory: Callable[[], dict[str, int]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _depth: tuple[float, int | None] = (0.0, None)

    def job_started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def job_ended(self, status: str, timings: dict[str, float] | None = None, audio_s: float = 0.0) -> None:
        """`status`: succeeded, failed, skipped, redelivered or released."""
        with self._lock:
            self.in_flight -= 1
            self.jobs[status] += 1
            self.audio_seconds += audio_s
            for stage in STAGES:
                if timings and timings.get(stage):
                    self.stage_seconds[stage] += timings[stage]
                    self.stage_count[stage] += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                *_family("jobs_total", "counter", "Jobs ended, by status.",
                         [(f'{{status="{s}"}}', n) for s, n in sorted(self.jobs.items())]),
                *_family("stage_seconds", "summary", "Seconds spent per job stage.",
                         [(f'_sum{{stage="{s}"}}', self.stage_seconds[s]) for s in STAGES]
                         + [(f'_count{{stage="{s}"}}', self.stage_count[s]) for s in STAGES]),
                *_family("audio_seconds_total", "counter", "Seconds of audio produced.", [("", self.audio_seconds)]),
                *_family("retries_total", "counter", "Transient failures retried within a job.", [("", self.retries)]),
                *_family("jobs_in_flight", "gauge", "Jobs claimed and not yet finished.", [("", self.in_flight)]),
            ]
        lines += self._scraped()
        return "\n".join(lines) + "\n"

    def _scraped(self) -> list[str]:
        lines: list[str] = []
        depth = self._queue_depth()
        if depth is not None:
            lines += _family("queue_depth", "gauge", "Messages waiting in the queue (approximate).", [("", depth)])
        memory = self.accelerator_memory() if self.accelerator_memory else {}
        if memory:
            lines += _family("accelerator_memory_bytes", "gauge", "Accelerator memory.",
                             [(f'{{kind="{k}"}}', v) for k, v in sorted(memory.items())])
        return lines

    def _queue_depth(self) -> int | None:
        if self.queue_depth is None:
            return None
        at, value = self._depth
        if time.monotonic() - at > DEPTH_CACHE_S:
            try:
                value = self.queue_depth()
            except Exception:  # a scrape must answer even when the queue does not
                value = None
            self._depth = (time.monotonic(), value)
        return value


def _family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    full = f"{PREFIX}_{name}"
    lines = [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
    return lines + [f"{full}{suffix} {value!r}" for suffix, value in samples]  # repr: exact, shortest


def cuda_memory(device: str) -> Callable[[], dict[str, int]] | None:
    if not device.startswith("cuda"):
        return None

    def read() -> dict[str, int]:
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return {"allocated": torch.cuda.memory_allocated(device), "reserved": torch.cuda.memory_reserved(device),
                "free": free, "total": total}

    return read
