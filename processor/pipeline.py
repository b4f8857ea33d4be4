"""Three stages, so the accelerator never waits for the network.

    intake     (a thread)     claim a lease, read the manifest, fetch and prepare the voice
    synthesis  (main thread)  up to `max_batch` ready jobs per call to the synthesizer
    output     (a thread)     write the audio, the log and the result, then end the lease

While job N synthesizes, the next jobs are claimed and their voices fetched, and
the previous ones are uploaded. Synthesis stays on the main thread, where the
model was loaded: torch's OpenMP pool belongs to the thread that first used it,
and on another thread the same CPU work measured up to twice as slow. A stop
signal also lands on the main thread, which is idle exactly when nothing is held.

Prefetch is bounded: at most `limit()` jobs are held (claimed, not yet
finished), and never so many that a claimed job would wait for synthesis longer
than half its lease.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from processor.logs import logger
from processor.shutdown import Shutdown, ShutdownRequested

J = TypeVar("J")

INTAKE_JOIN_S = 1.0  # at an idle stop, time for a lease claimed at that instant to be given back


class Pipeline(Generic[J]):
    def __init__(
        self,
        synthesize: Callable[[list[J]], None],
        complete: Callable[[J], None],
        put_back: Callable[[J], None],
        shutdown: Shutdown,
        *,
        max_batch: int = 1,
        prefetch: int = 2,
        lease_s: float = 300.0,
        exit_when_idle_s: float = 0.0,
    ) -> None:
        self._synthesize, self._complete, self._put_back = synthesize, complete, put_back
        self.shutdown = shutdown
        self.max_batch, self.prefetch, self.lease_s = max(1, max_batch), max(0, prefetch), lease_s
        self._ready: queue.Queue[J | None] = queue.Queue()
        self._done: queue.Queue[J | None] = queue.Queue()
        self._cond = threading.Condition()
        self._held = 0
        self._waiting = False  # the main thread waits for a ready job
        self._batch_s = 0.0  # moving average of one synthesis call, 0 until the first one
        self.exit_when_idle_s = exit_when_idle_s
        self.exited_idle = False
        self.busy_since: float | None = None  # monotonic start of the synthesis call in progress
        self._last_active = time.monotonic()

    def run(self, intake: Callable[[Pipeline[J]], None]) -> None:
        """Run `intake` on its own thread and synthesize on this one until intake ends and all is written."""
        output = threading.Thread(target=self._output_loop, name="output", daemon=True)
        feeder = threading.Thread(target=self._intake, args=(intake,), name="intake", daemon=True)
        output.start()
        feeder.start()
        try:
            try:
                self._synthesis_loop()
            except ShutdownRequested:  # idle at a stop signal
                pass
            if self.shutdown.requested.is_set():  # leave now: intake may be inside a long poll
                feeder.join(INTAKE_JOIN_S)
                self._put_back_ready()
        finally:
            self._done.put(None)
            output.join()

    # --- intake side ---------------------------------------------------------------------

    def limit(self) -> int:
        """Jobs held at once: one batch in synthesis plus the prefetched ones that fit in half a lease."""
        ahead = self.prefetch
        if self._batch_s > 0:
            ahead = min(ahead, int(self.lease_s / 2 / self._batch_s) * self.max_batch)
        return self.max_batch + ahead

    def wait_for_room(self) -> bool:
        """Block while the pipeline holds its limit; False once a stop was requested."""
        with self._cond:
            while self._held >= self.limit() and not self.shutdown.requested.is_set():
                self._cond.wait(0.5)
        return not self.shutdown.requested.is_set()

    @property
    def held(self) -> int:
        return self._held

    def drain(self) -> None:
        """Wait until every held job is finished (or a stop is requested)."""
        with self._cond:
            while self._held > 0 and not self.shutdown.requested.is_set():
                self._cond.wait(0.5)

    def hold(self) -> None:
        """A lease was claimed: from now on a stop signal must let the job finish or give it back."""
        with self._cond:
            self._held += 1
            self._last_active = time.monotonic()
            self.shutdown.set_idle(False)

    def to_synthesis(self, job: J) -> None:
        self._ready.put(job)

    def to_output(self, job: J) -> None:
        self._done.put(job)

    def _intake(self, intake: Callable[[Pipeline[J]], None]) -> None:
        try:
            intake(self)
        except Exception as exc:  # the jobs already held still finish; the worker then exits
            logger.error(f"intake stopped: {exc!r}", extra={"stage": "intake"})
        finally:
            self._ready.put(None)

    # --- synthesis side (main thread) --------------------------------------------------------

    def _synthesis_loop(self) -> None:
        closing = False
        while not closing:
            first = self._next_ready()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._ready.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            self._run_batch(batch)

    def _next_ready(self) -> J | None:
        """The next ready job; while nothing is held, a stop signal ends the wait at once."""
        with self._cond:
            self._waiting = True
            if self._held == 0:
                self.shutdown.set_idle(True)
        try:
            return self._wait_ready()
        finally:
            with self._cond:
                self._waiting = False
                self.shutdown.set_idle(False)

    def _wait_ready(self) -> J | None:
        """Block for the next ready job; with `exit_when_idle_s`, None once nothing was held for that long."""
        while True:
            try:
                return self._ready.get(timeout=self.exit_when_idle_s or None)
            except queue.Empty:
                pass
            with self._cond:
                idle_s = time.monotonic() - self._last_active
                if self._held == 0 and idle_s >= self.exit_when_idle_s:
                    self.exited_idle = True
                    self.shutdown.requested.set()  # the intake stops taking work, as on a stop signal
                    return None

    def _run_batch(self, batch: list[J]) -> None:
        if self.shutdown.requested.is_set():
            for job in batch:  # not started: another worker takes them at once
                self._give_back(job)
            return
        started = self.busy_since = time.monotonic()
        try:
            self._synthesize(batch)
        except Exception as exc:  # the jobs still reach the output stage, which fails them
            logger.error(f"synthesis stage error: {exc!r}", extra={"stage": "synthesis"})
        finally:
            self.busy_since = None
        seconds = time.monotonic() - started
        self._batch_s = seconds if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * seconds
        for job in batch:
            self._done.put(job)

    def _put_back_ready(self) -> None:
        while True:
            try:
                job = self._ready.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._give_back(job)

    def _give_back(self, job: J) -> None:
        """A job claimed but not started when the worker stops: the output stage releases its lease."""
        self._put_back(job)
        self._done.put(job)

    # --- output side ---------------------------------------------------------------------------

    def _output_loop(self) -> None:
        while (job := self._done.get()) is not None:
            try:
                self._complete(job)
            except Exception as exc:  # never stop the output thread: the other jobs still need it
                logger.error(f"could not finish a job: {exc!r}", extra={"stage": "output"})
            with self._cond:
                self._held -= 1
                self._last_active = time.monotonic()
                if self._held == 0 and self._waiting:  # the last job is done: a stop signal may end the wait
                    self.shutdown.set_idle(True, interrupt=False)
                self._cond.notify_all()

