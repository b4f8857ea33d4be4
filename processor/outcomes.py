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
    Deferred    another worker holds the job's live     none                kept: the worker looks again after
                in-progress marker                                          a pause (no attempt is used)
    Released    claimed but not started at a stop (or   none                release at once
                not to be run now: `why` says); or
                its outbox cannot be written (`cause`:
                the worker then stops taking work)
    Unrecorded  its record could not be written, for    none                ack: not run forever
                good (logged with the code)

When writing an outcome's record fails, `settle` ends the lease by what that failure makes of
the job instead (`unrecorded`): released or redelivered when it may pass, else Unrecorded.

A job is finished when its lease ended Succeeded, Failed (both with a result) or Skipped (a
result existed). Any other end leaves it, and so does no end at all (released at a stop by
the abandon): `Tally` counts both for `run`'s last line and its exit code.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from processor.errors import F5BatchError, InvalidJson, OutboxUnwritable, PermanentError
from processor.manifest import printable
from processor.metrics import Metrics
from processor.results import ErrorInfo, Result, Timings, VoiceUsed
from processor.storage import Lease, Rewritable
from processor.storage.markers import Busy

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
    finished: ClassVar[str | None] = None  # how a job that ends so counts as finished in the `Tally`; None: left

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

    def trouble(self) -> str | None:
        """Why the worker must stop taking work after this outcome (a fault of its own); None: it carries on."""
        return None

    def settle(self, lease: Lease, outputs: Outputs, origin: Origin, heed: Callable[[Outcome], None]) -> Outcome:
        """The record first (consumers wait for it), then the lease: a crash in between redoes the job, loses none.

        Returns the outcome that ended the lease: this one, or what a failure to write its record made of
        the job. `heed` sees that outcome before its lease ends: a worker whose outbox fails stops taking
        work before the manifest is back in the inbox, so that it does not take it straight back.
        """
        ended = self._recorded(outputs, origin)
        heed(ended)
        ended.end_lease(lease)
        return ended

    def _recorded(self, outputs: Outputs, origin: Origin) -> Outcome:
        record = self.record(origin)
        if record is None:
            return self
        try:
            outputs.write_record(self.job.log, record)
        except F5BatchError as exc:
            ended = unrecorded(self.job, exc)
        except Exception as exc:  # a bug: the job must still end, never stay claimed
            ended = unrecorded(self.job, F5BatchError(f"unexpected error writing the result: {exc!r}"))
        else:
            return self
        ended.announce()
        return ended

    def _result(self, origin: Origin, produced: dict[str, Any], error: F5BatchError | None) -> Result:
        job, manifest = self.job, self.job.manifest
        job.timings.total = time.monotonic() - job.started
        return Result(
            id=job.id, status="failed" if error else "succeeded", **produced,
            format=manifest.format if manifest else None,
            seed=manifest.effective_seed if manifest else None,
            voice_text=job.voice.text.strip() if job.voice else None,
            voice_text_source=job.voice.text_source if job.voice else None,  # type: ignore[arg-type]
            model=origin.model,
            check=job.check,
            voices=voices_used(job) or None,
            error=ErrorInfo(code=error.code, message=error.message) if error else None,
            attempts=job.attempt,
            timings=Timings(**{k: round(v, 4) for k, v in job.timings.model_dump().items()}),
            manifest_sha256=hashlib.sha256(job.body).hexdigest(),
            manifest=printable(job.held.name, 1024),
            worker=origin.worker,
            finished_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )


def voices_used(job: Job) -> dict[str, VoiceUsed]:
    """The voices table's voices a job's script spoke in, with the transcripts they were given."""
    if job.manifest is None or not job.voices:
        return {}
    specs = job.manifest.voice_specs()
    return {name: VoiceUsed(voice=specs[name].voice, voice_text=voice.text.strip(),
                            voice_text_source=voice.text_source)  # type: ignore[arg-type]
            for name, voice in job.voices.items() if name != "main"}


@dataclass(frozen=True)
class Skipped(Outcome):
    why: str = "a result for this id exists already; not running it again"
    stage: str = "skipped"
    level: int = logging.INFO
    metric = "skipped"
    finished = "skipped"

    def announce(self) -> None:
        self.job.log.event(self.stage, self.why, self.level)


@dataclass(frozen=True)
class Succeeded(Outcome):
    produced: dict[str, Any]
    metric = "succeeded"
    finished = "succeeded"

    def record(self, origin: Origin) -> Result:
        return self._result(origin, self.produced, None)

    def count(self, metrics: Metrics) -> None:
        metrics.job_ended(self.metric, self.job.timings.model_dump(), self.produced["duration_s"])


@dataclass(frozen=True)
class Failed(Outcome):
    error: F5BatchError
    metric = "failed"
    finished = "failed"

    def announce(self) -> None:
        level = logging.WARNING if isinstance(self.error, PermanentError) else logging.ERROR
        self.job.log.event("failed", self.error.message, level, code=self.error.code)

    def record(self, origin: Origin) -> Result:
        return self._result(origin, {}, self.error)

    def count(self, metrics: Metrics) -> None:
        metrics.job_ended(self.metric, self.job.timings.model_dump(), code=self.error.code)


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


DEFER_MIN_S, DEFER_MAX_S = 0.5, 5.0  # how soon a deferred job looks again: soon after the other worker's end


@dataclass(frozen=True)
class Deferred(Outcome):
    busy: Busy
    delay_s: float
    metric = "deferred"

    @classmethod
    def behind(cls, job: Job, busy: Busy) -> Deferred:
        """Look again when the marker would expire unless renewed, but at least every DEFER_MAX_S."""
        return cls(job, busy, min(DEFER_MAX_S, max(DEFER_MIN_S, busy.seconds_left())) * random.uniform(0.8, 1.0))

    def again_after_s(self) -> float:
        return self.delay_s

    def announce(self) -> None:
        self.job.log.event("deferred", f"another worker ({self.busy.worker}) is running this job; looking again "
                           f"in {self.delay_s:.1f} s", worker=self.busy.worker,
                           marker_s=round(self.busy.seconds_left(), 1))


@dataclass(frozen=True)
class Released(Outcome):
    why: str = "the worker is stopping; the job goes back to the inbox for another worker"
    cause: F5BatchError | None = None  # the worker's own failure (its outbox) that sent the job back
    metric = "released"

    def announce(self) -> None:
        self.job.say_claimed()  # a job given back before its life began has said nothing yet
        if self.cause is None:
            self.job.log.event("released", self.why)
        else:
            self.job.log.event("released", self.why, logging.WARNING, code=self.cause.code)

    def end_lease(self, lease: Lease) -> None:
        lease.release()

    def trouble(self) -> str | None:
        if self.cause is None:
            return None
        fix = ("free space on the outbox disk (or fix its permissions)" if isinstance(self.cause, OutboxUnwritable)
               else "check the outbox store's health")
        return (f"the outbox cannot be written ({self.cause.message}); the manifests not done are back in the "
                f"inbox: {fix}, then run the worker again")


@dataclass(frozen=True)
class Unrecorded(Outcome):
    """The job's record could not be written, and trying again cannot help: it is over, its log says why."""

    error: F5BatchError
    metric = "failed"

    def announce(self) -> None:
        self.job.log.event("unrecorded", f"its result could not be written: {self.error.message}", logging.ERROR,
                           code=self.error.code)

    def count(self, metrics: Metrics) -> None:
        metrics.job_ended(self.metric, code=self.error.code)


def unrecorded(job: Job, error: F5BatchError) -> Outcome:
    """A job whose record could not be written: back to the inbox while that may pass, else over (acked).

    A queue delivers it again after its backoff; from a folder or an S3 inbox the worker would take it straight
    back and fail the same way, so it stops taking work instead, as for a full outbox disk.
    """
    if error.transient and job.held.lease.redelivers and not isinstance(error, OutboxUnwritable):
        return Redeliver(job, error)
    if error.transient:
        return outbox_trouble(job, error, "its result could not be written")
    return Unrecorded(job, error)


def outbox_trouble(job: Job, error: F5BatchError, what: str) -> Released:
    return Released(job, f"{what}: {error.message}; the manifest goes back to the inbox and the worker stops "
                         "taking work", error)


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
        if isinstance(error, OutboxUnwritable):  # the outbox is the worker's problem, not the job's
            return outbox_trouble(job, error, "its files could not be written")
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


FINISHED = ("succeeded", "failed", "skipped")


@dataclass
class Tally:
    """How the jobs a worker took ended: finished (succeeded, failed, skipped) or left, for `run`'s last line.

    A job is known by its lease (the queue message and the manifest's name): one left and then taken again and
    finished in the same run (a redelivery, a claim back in the inbox) counts once, as finished.
    """

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED, 0))
    _open: set[tuple[str, str]] = field(default_factory=set)  # taken and not finished
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def took(self, job: Job) -> None:
        with self._lock:
            self._open.add(self._key(job))

    def ended(self, outcome: Outcome) -> None:
        if outcome.finished is None:
            return
        with self._lock:
            self.counts[outcome.finished] += 1
            self._open.discard(self._key(outcome.job))

    @property
    def left(self) -> int:
        with self._lock:
            return len(self._open)

    def fields(self) -> dict[str, int]:
        return {**self.counts, "left": self.left}

    def summary(self) -> str:
        """`2 succeeded, 1 failed, 1 left (…)`; skipped jobs only when there are some."""
        counts = self.fields()
        parts = [f"{counts['succeeded']} succeeded", f"{counts['failed']} failed"]
        if counts["skipped"]:
            parts.append(f"{counts['skipped']} skipped (a result existed)")
        parts.append(f"{counts['left']} left" + (" (not finished: see the lines above)" if counts["left"] else ""))
        return ", ".join(parts)

    @staticmethod
    def _key(job: Job) -> tuple[str, str]:
        return job.held.message_id or "", job.held.name
