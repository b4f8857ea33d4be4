"""Three stages, so the accelerator never waits for the network.

    intake     (a thread)     claim jobs; run each job's life up to its synthesis request
    synthesis  (main thread)  up to `max_batch` requests per call to the synthesizer
    output     (a thread)     hand each job its speech, let its life finish, end the job

While job N synthesizes, the next jobs are claimed and their voices fetched, and
the previous ones are uploaded. Synthesis stays on the main thread, where the
model was loaded: torch's OpenMP pool belongs to the thread that first used it,
and on another thread the same CPU work measured up to twice as slow. A stop
signal also lands on the main thread, which is idle exactly when nothing is held.

The pipeline knows a job only through `Stages`: its life is a generator that
yields a synthesis request and returns an outcome (see `job.py`); `end` says
whether the job is over or is to be run again after a pause. A life may yield
again when it is resumed (the listening check's retakes): that request joins the
ready ones and is batched with them, and the job stays held until its life ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from processor.logs import logger
from processor.shutdown import Shutdown, ShutdownRequested

J = TypeVar("J")

INTAKE_JOIN_S = 1.0  # at a stop, time for a lease claimed at that instant to be given back
SWAP_AFTER = 4  # batches of a loaded model served before the oldest job's model is loaded in its place
ENDED_POLL_S = 0.05  # after intake ended, how often the synthesis loop looks for a held job's next request
_MORE = object()  # a resumed life yielded another request


@dataclass(frozen=True)
class Stages(Generic[J]):
    claim: Callable[[], Sequence[J]]  # newly claimed jobs; none: the inbox is empty (`--once`) or a stop came
    live: Callable[[J], Generator[Any, Any, Any]]  # a job's life: yields its request, returns its outcome
    synthesize: Callable[[list[Any]], list[Any]]  # one call for many requests: speech, or an exception, each
    end: Callable[[J, Any], float | None]  # settle an outcome; a number: run the job again after that long
    put_back: Callable[[J], None]  # a held job that did not start when the worker stops
    model_of: Callable[[Any], Hashable] = lambda request: None  # the model a request needs: batches never mix them
    loaded: Callable[[Hashable], bool] = lambda model: True  # whether that model is loaded (no swap to serve it)


@dataclass(frozen=True)
class Prefetch:
    """Jobs held at once: one batch in synthesis plus the prefetched ones that fit in half a lease."""

    max_batch: int
    ahead: int
    lease_s: float

    def limit(self, batch_s: float) -> int:
        ahead = self.ahead
        if batch_s > 0:
            ahead = min(ahead, int(self.lease_s / 2 / batch_s) * self.max_batch)
        return self.max_batch + ahead


class Held:
    """The jobs the pipeline holds (claimed, not yet ended), and the waits that depend on how many there are."""

    def __init__(self, shutdown: Shutdown) -> None:
        self.shutdown = shutdown
        self.cond = threading.Condition()
        self.count = 0
        self.waiting = False  # the main thread waits for a ready job
        self.last_active = time.monotonic()

    def add(self, count: int) -> None:
        with self.cond:
            self.count += count
            if count:
                self.last_active = time.monotonic()
                self.shutdown.set_idle(False)

    def remove(self) -> None:
        with self.cond:
            self.count -= 1
            self.last_active = time.monotonic()
            if self.count == 0 and self.waiting:  # the last job is done: a stop signal may end the wait
                self.shutdown.set_idle(True, interrupt=False)
            self.cond.notify_all()

    def wait_below(self, limit: Callable[[], int]) -> bool:
        """Block while `limit()` jobs or more are held; False once a stop was requested."""
        with self.cond:
            while self.count >= limit() and not self.shutdown.requested.is_set():
                self.cond.wait(0.5)
        return not self.shutdown.requested.is_set()

    def wait_empty(self) -> bool:
        """Wait until no job is held; False when a stop came first."""
        with self.cond:
            while self.count > 0 and not self.shutdown.requested.is_set():
                self.cond.wait(0.5)
        return not self.shutdown.requested.is_set()

    @contextmanager
    def waiting_for_work(self) -> Iterator[None]:
        """Around the main thread's wait for a ready job: while nothing is held, a stop signal ends it at once."""
        with self.cond:
            self.waiting = True
            if self.count == 0:
                self.shutdown.set_idle(True)
        try:
            yield
        finally:
            with self.cond:
                self.waiting = False
                self.shutdown.set_idle(False)

    def idle_s(self) -> float | None:
        """Seconds since the last job ended, while none is held."""
        with self.cond:
            return time.monotonic() - self.last_active if self.count == 0 else None


@dataclass(eq=False)
class _Task(Generic[J]):
    job: J
    life: Generator[Any, Any, Any]
    request: Any = None
    result: Any = None  # the synthesizer's answer for this job
    outcome: Any = field(default=None)  # set when the life ended before synthesis


class _Ready(Generic[J]):
    """Tasks waiting for the synthesizer, oldest first, and whether intake has said it ended (by putting None).

    A batch holds the tasks of one model. It is the oldest task's model, unless that model is not loaded, another
    one with tasks ready is, and the oldest has been passed over fewer than SWAP_AFTER batches: jobs for the
    loaded model go first, so a queue that mixes models does not swap them at every job, and no job waits on a
    swap for more than SWAP_AFTER batches.
    """

    def __init__(self, model_of: Callable[[Any], Hashable], loaded: Callable[[Hashable], bool]) -> None:
        self._tasks: deque[_Task[J]] = deque()
        self._cond = threading.Condition()
        self._model_of, self._loaded = model_of, loaded
        self.intake_ended = False
        self.passed_over = 0  # batches of another model served while the oldest task waited

    def put(self, task: _Task[J] | None) -> None:
        with self._cond:
            if task is None:
                self.intake_ended = True
            else:
                self._tasks.append(task)
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Whether a task is ready, waiting up to `timeout` for one (None: until one comes or intake ends)."""
        with self._cond:
            ended = self.intake_ended
            self._cond.wait_for(lambda: self._tasks or self.intake_ended != ended, timeout)
            return bool(self._tasks)

    def batch(self, count: int) -> list[_Task[J]]:
        """Up to `count` ready tasks of one model, oldest first."""
        with self._cond:
            if not self._tasks:
                return []
            model = self._model_of(self._tasks[0].request)
            if not self._loaded(model) and self.passed_over < SWAP_AFTER:
                model = next((m for m in map(self._model_of, (t.request for t in self._tasks)) if self._loaded(m)),
                             model)
            chosen = [task for task in self._tasks if self._model_of(task.request) == model][:count]
            oldest = self._tasks[0]
            for task in chosen:
                self._tasks.remove(task)
            self.passed_over = 0 if oldest in chosen else self.passed_over + 1
            return chosen

    def drain(self) -> list[_Task[J]]:
        with self._cond:
            tasks = list(self._tasks)
            self._tasks.clear()
            return tasks


class Pipeline(Generic[J]):
    def __init__(self, stages: Stages[J], shutdown: Shutdown, prefetch: Prefetch, exit_when_idle_s: float) -> None:
        self.stages, self.shutdown, self.prefetch = stages, shutdown, prefetch
        self.exit_when_idle_s = exit_when_idle_s
        self._ready: _Ready[J] = _Ready(stages.model_of, stages.loaded)
        self._done: queue.Queue[_Task[J] | None] = queue.Queue()
        self.held = Held(shutdown)
        self._again: dict[J, threading.Timer] = {}  # jobs waiting to be run again
        self._again_lock = threading.Lock()
        self._batch_s = 0.0  # moving average of one synthesis call, 0 until the first one
        self.exited_idle = False
        self.intake_error: Exception | None = None  # what stopped intake before the inbox was drained
        self.busy_since: float | None = None  # monotonic start of the synthesis call in progress
        shutdown.on_stop(self._put_back_unstarted)

    def run(self) -> None:
        """Claim on one thread, write on another, synthesize on this one until intake ends and all is written."""
        output = threading.Thread(target=self._output_loop, name="output", daemon=True)
        intake = threading.Thread(target=self._intake, name="intake", daemon=True)
        output.start()
        intake.start()
        try:
            self._synthesis_loop()
        except ShutdownRequested:  # idle at a stop signal
            pass
        finally:
            if self.shutdown.requested.is_set():  # leave now: intake may be inside a long poll
                intake.join(INTAKE_JOIN_S)
                self._put_back_unstarted()
            self._done.put(None)
            output.join()

    # --- intake side -----------------------------------------------------------------------

    def _intake(self) -> None:
        try:
            while self.held.wait_below(lambda: self.prefetch.limit(self._batch_s)):
                in_flight = self.held.count
                with self.shutdown.claiming():  # what is claimed is held before a stop can miss it
                    jobs = self.stages.claim()
                    self.held.add(len(jobs))
                # The inbox looked empty while jobs were in flight: one may have gone back to it since.
                # Wait for them to end, then look again.
                if not jobs and not (in_flight and self.held.wait_empty()):
                    return
                for job in jobs:
                    self._begin(job)
        except Exception as exc:  # the jobs already held still finish; the worker then exits, and says so
            self.intake_error = exc
            logger.error(f"intake stopped: {exc!r}", extra={"stage": "intake"})
        finally:
            self._ready.put(None)

    def _begin(self, job: J) -> None:
        """Run the job's life up to its synthesis request; a life that ends before it goes straight to output."""
        if self.shutdown.requested.is_set():
            self._release(job)
            return
        task = _Task(job, self.stages.live(job))
        try:
            task.request = next(task.life)
        except StopIteration as ended:
            task.outcome = ended.value
            self._done.put(task)
            return
        self._ready.put(task)

    # --- synthesis side (main thread) -------------------------------------------------------

    def _synthesis_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            if self.shutdown.requested.is_set():
                for task in batch:  # not started: another worker takes them at once
                    self._give_back(task)
                continue
            started = self.busy_since = time.monotonic()
            try:
                results = self.stages.synthesize([task.request for task in batch])
            except Exception as exc:  # each job's life receives the error and fails alone
                results = [exc] * len(batch)
            finally:
                self.busy_since = None
            seconds = time.monotonic() - started
            self._batch_s = seconds if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * seconds
            for task, result in zip(batch, results, strict=True):
                task.result = result
                self._done.put(task)

    def _next_batch(self) -> list[_Task[J]] | None:
        """Block for the next ready tasks, up to one batch of one model; None once intake has ended and no job is
        held (none can yield a request any more), or with `exit_when_idle_s` once nothing was held for that long."""
        ready = self._ready
        with self.held.waiting_for_work():
            while not (ready.intake_ended and self.held.count == 0):
                # Once intake has ended, the held jobs' lives may still yield a retake: look again shortly.
                if ready.wait(ENDED_POLL_S if ready.intake_ended else self.exit_when_idle_s or None):
                    return ready.batch(self.prefetch.max_batch)
                idle_s = self.held.idle_s()
                if not ready.intake_ended and idle_s is not None and idle_s >= self.exit_when_idle_s > 0:
                    self.exited_idle = True
                    self.shutdown.requested.set()  # the intake stops taking work, as on a stop signal
                    return None
            return None

    # --- output side ------------------------------------------------------------------------

    def _output_loop(self) -> None:
        while (task := self._done.get()) is not None:
            try:
                self._finish(task)
            except Exception as exc:  # never stop the output thread: the other jobs still need it
                logger.error(f"could not finish a job: {exc!r}", extra={"stage": "output"})
                self.held.remove()

    def _finish(self, task: _Task[J]) -> None:
        outcome = task.outcome if task.outcome is not None else self._resume(task)
        if outcome is _MORE:
            self._synthesize_again(task)
            return
        again_s = self.stages.end(task.job, outcome)
        if again_s is None:
            self.held.remove()
            return
        with self._again_lock:  # still held: run again after the pause, unless the worker stops first
            timer = self._again[task.job] = threading.Timer(again_s, self._run_again, (task.job,))
            timer.daemon = True
            timer.start()

    def _resume(self, task: _Task[J]) -> Any:
        """The rest of the job's life, from its synthesis result to its outcome, or `_MORE` with its next request."""
        result, task.result = task.result, None
        try:
            if isinstance(result, BaseException):
                task.request = task.life.throw(result)
            else:
                task.request = task.life.send(result)
        except StopIteration as ended:
            return ended.value
        return _MORE

    def _synthesize_again(self, task: _Task[J]) -> None:
        """A request the life yielded once resumed: batched with the ready ones, unless the worker is stopping.

        Under `_again_lock`, as `_put_back_unstarted` drains the ready queue only after taking it: a request is
        either queued before that drain or sees the stop and is given back here."""
        with self._again_lock:
            queued = not self.shutdown.requested.is_set()
            if queued:
                self._ready.put(task)
        if not queued:
            self._give_back(task)

    def _run_again(self, job: J) -> None:
        with self._again_lock:
            if self._again.pop(job, None) is None:  # put back at a stop meanwhile
                return
        self._begin(job)

    # --- giving back ------------------------------------------------------------------------

    def _put_back_unstarted(self) -> None:
        """At a stop: jobs claimed but not synthesizing go back to the inbox now, for another worker."""
        with self._again_lock:
            waiting = list(self._again)
            for job in waiting:
                self._again.pop(job).cancel()
        for job in waiting:
            self._release(job)
        for task in self._ready.drain():
            self._give_back(task)

    def _give_back(self, task: _Task[J]) -> None:
        task.life.close()  # its scratch folder goes with it
        self._release(task.job)

    def _release(self, job: J) -> None:
        try:
            self.stages.put_back(job)
        finally:
            self.held.remove()
