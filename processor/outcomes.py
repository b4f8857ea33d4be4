"""How a job's life ends. Each outcome knows what it logs, its metric label, its result record and its lease action.

    Skipped     a result exists already                 no record           ack
    Succeeded   audio written                           record: succeeded   ack
    Failed      bad input, or a transient failure       record: failed      ack
                with no attempt left
    Redeliver   a transient failure, and the queue      none                retry later (the queue's backoff)
                delivers again
    TryAgain    a transient failure not retried per     none                kept: the worker runs the job again
                call, and the worker tries again itself                     after a backoff
                (folder, S3 inbox)
    Released    claimed but not started at a stop (or   none                release at once
                not to be run now: `why` says)
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from processor.errors import F5BatchError, InvalidJson, PermanentError
from processor.manifest import printable
from processor.metrics import Metrics
from processor.results import ErrorInfo, Result, Timings
from processor.storage import Lease, Rewritable

if TYPE_CHECKING:
    from processor.job import Job
    from processor.outputs import Outputs
    from processor.settings import Settings


@dataclass(frozen=True)
class Origin:
    """Who made a result: the model and the worker."""

    model: str
    worker: str


@dataclass(frozen=True)
class Outcome:
    job: Job
    metric: ClassVar[str]
    retried: ClassVar[bool] = False  # counted in f5batch_retries_total

    def again_after_s(self) -> float | None:
        """None: the job is over. Else the worker runs it again after this long, the lease kept meanwhile."""
        return None

    def announce(self) -> None:
        """Say in the job's log how it ended."""

    def record(self, origin: Origin) -> Result | None:
        return None

    def count(self, metrics: Metrics) -> None:
        metrics.job_ended(self.metric)

    def end_lease(self, lease: Lease) -> None:
        lease.ack()

    def settle(self, lease: Lease, outputs: Outputs, origin: Origin) -> None:
        """The record first (consumers wait for it), then the lease: a crash in between redoes the job, loses none."""
        record = self.record(origin)
        if record is not None:
            outputs.write_record(self.job.log, record)
        self.end_lease(lease)

    def _result(self, origin: Origin, produced: dict[str, Any], error: F5BatchError | None) -> Result:
        job, manifest = self.job, self.job.manifest
        job.timings.total = time.monotonic() - job.started
        return Result(
            id=job.id, status="failed" if error else "succeeded", **produced,
            format=manifest.format if manifest else None,
            seed=manifest.effective_seed if manifest else None,
            model=origin.model,
            error=ErrorInfo(code=error.code, message=error.message) if error else None,
            attempts=job.attempt,
            timings=Timings(**{k: round(v, 4) for k, v in job.timings.model_dump().items()}),
            manifest_sha256=hashlib.sha256(job.body).hexdigest(),
            manifest=printable(job.held.name, 1024),
            worker=origin.worker,
            finished_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )


@dataclass(frozen=True)
class Skipped(Outcome):
    why: str = "a result for this id exists already; not running it again"
    stage: str = "skipped"
    level: int = logging.INFO
    metric = "skipped"

    def announce(self) -> None:
        self.job.log.event(self.stage, self.why, self.level)


@dataclass(frozen=True)
class Succeeded(Outcome):
    produced: dict[str, Any]
    metric = "succeeded"

    def record(self, origin: Origin) -> Result:
        return self._result(origin, self.produced, None)

    def count(self, metrics: Metrics) -> None:
        metrics.job_ended(self.metric, self.job.timings.model_dump(), self.produced["duration_s"])


@dataclass(frozen=True)
class Failed(Outcome):
    error: F5BatchError
    metric = "failed"

    def announce(self) -> None:
        level = logging.WARNING if isinstance(self.error, PermanentError) else logging.ERROR
        self.job.log.event("failed", self.error.message, level, code=self.error.code)

    def record(self, origin: Origin) -> Result:
        return self._result(origin, {}, self.error)

    def count(self, metrics: Metrics) -> None:
        metrics.job_ended(self.metric, self.job.timings.model_dump())


@dataclass(frozen=True)
class Redeliver(Outcome):
    error: F5BatchError
    metric = "redelivered"
    retried = True

    def announce(self) -> None:
        self.job.log.event("retry_later", f"{self.error.message}; the manifest will be delivered again",
                           logging.WARNING, code=self.error.code)

    def end_lease(self, lease: Lease) -> None:
        lease.retry_later()


@dataclass(frozen=True)
class TryAgain(Outcome):
    error: F5BatchError
    delay_s: float
    metric = "retried"
    retried = True

    def again_after_s(self) -> float:
        return self.delay_s

    def announce(self) -> None:
        self.job.log.event("retry", f"transient failure, retrying: {self.error.message}", logging.WARNING,
                           attempt=self.job.attempt, code=self.error.code)


@dataclass(frozen=True)
class Released(Outcome):
    why: str = "the worker is stopping; the job goes back to the inbox for another worker"
    metric = "released"

    def announce(self) -> None:
        self.job.log.event("released", self.why)

    def end_lease(self, lease: Lease) -> None:
        lease.release()


@dataclass(frozen=True)
class Attempts:
    """How many times the worker itself tries a job that fails transiently (F5B_MAX_ATTEMPTS), and how long it waits."""

    max_attempts: int
    initial_s: float
    max_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Attempts:
        return cls(settings.max_attempts, settings.retry_initial_s, settings.retry_max_s)

    def after(self, job: Job, error: F5BatchError) -> Outcome:
        """The outcome of a failure: permanent errors fail now; transient ones are tried again while they may be."""
        lease = job.held.lease
        if isinstance(error, InvalidJson) and isinstance(lease, Rewritable) and lease.changed_since_read():
            return Released(job, "the manifest changed after it was read (a copy was still writing it); it goes back "
                                 "to the inbox and is read again once complete")
        if not error.transient:
            return Failed(job, error)
        if lease.redelivers and not lease.final_attempt:
            return Redeliver(job, error)
        if not lease.redelivers and not error.retried_per_call and job.attempt < self.max_attempts:
            backoff = min(self.max_s, self.initial_s * 2 ** (job.attempt - 1))
            return TryAgain(job, error, backoff * random.uniform(0.5, 1.0))
        return Failed(job, error)
