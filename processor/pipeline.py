"""Three stages on their own threads, so the accelerator never waits for the network.

    intake     (calling thread)  claim a lease, read the manifest, fetch and prepare the voice
    synthesis  (one thread)      up to `max_batch` ready jobs per call to the synthesizer
    output     (one thread)      write the audio, the log and the result, then end the lease

While job N synthesizes, the next jobs are claimed and their voices fetched, and
the previous ones are uploaded. Prefetch is bounded: at most `limit()` jobs are
held (claimed, not yet finished), and never so many that a claimed job would wait
for synthesis longer than half its lease.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from processor.logs import logger
from processor.shutdown import Shutdown

J = TypeVar("J")
L = TypeVar("L")


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
    ) -> None:
        self._synthesize, self._complete, self._put_back = synthesize, complete, put_back
        self.shutdown = shutdown
        self.max_batch, self.prefetch, self.lease_s = max(1, max_batch), max(0, prefetch), lease_s
        self._ready: queue.Queue[J | None] = queue.Queue()
        self._done: queue.Queue[J | None] = queue.Queue()
        self._cond = threading.Condition()
        self._held = 0
        self._waiting = False
        self._batch_s = 0.0  # moving average of one synthesis call, 0 until the first one
        self._threads = [
            threading.Thread(target=self._synthesis_loop, name="synthesis", daemon=True),
            threading.Thread(target=self._output_loop, name="output", daemon=True),
        ]

    def __enter__(self) -> Pipeline[J]:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Finish every held job (or release the ones not started, when stopping), then stop the threads."""
        self._ready.put(None)
        for thread in self._threads:
            thread.join()

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

    def next_lease(self, leases: Iterator[L]) -> L | None:
        """The next lease; while waiting with nothing held, a stop signal ends the wait at once."""
        with self._cond:
            self._waiting = True
            if self._held == 0:
                self.shutdown.set_idle(True)
        try:
            return next(leases, None)
        finally:
            with self._cond:
                self._waiting = False
                self.shutdown.set_idle(False)

    def hold(self) -> None:
        with self._cond:
            self._held += 1

    def to_synthesis(self, job: J) -> None:
        self._ready.put(job)

    def to_output(self, job: J) -> None:
        self._done.put(job)

    def _synthesis_loop(self) -> None:
        closing = False
        while not closing:
            first = self._ready.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch and not closing:
                try:
                    more = self._ready.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                else:
                    batch.append(more)
            self._run_batch(batch)
        self._done.put(None)

    def _run_batch(self, batch: list[J]) -> None:
        if self.shutdown.requested.is_set():
            for job in batch:  # not started: another worker takes them at once
                self._put_back(job)
                self._done.put(job)
            return
        started = time.monotonic()
        try:
            self._synthesize(batch)
        except Exception as exc:  # the jobs still reach the output stage, which fails them
            logger.error(f"synthesis stage error: {exc!r}", extra={"stage": "synthesis"})
        seconds = time.monotonic() - started
        self._batch_s = seconds if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * seconds
        for job in batch:
            self._done.put(job)

    def _output_loop(self) -> None:
        while (job := self._done.get()) is not None:
            try:
                self._complete(job)
            except Exception as exc:  # never stop the output thread: the other jobs still need it
                logger.error(f"could not finish a job: {exc!r}", extra={"stage": "output"})
            with self._cond:
                self._held -= 1
                if self._held == 0 and self._waiting:
                    self.shutdown.set_idle(True, interrupt=False)
                self._cond.notify_all()
