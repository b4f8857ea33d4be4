"""Graceful shutdown: how a pod is stopped (SIGTERM) without losing or delaying a job.

First SIGTERM or SIGINT: an idle worker leaves at once; a busy one runs the
sequence of `_stop_in_order`. Whatever it cannot finish it releases (SQS
visibility to 0, S3 lease deleted, local claim returned) so another worker
takes it at once, then exits 0. A second signal skips the wait: release, exit 0.

A claim is the one moment a lease exists that no abandon hook knows of yet: the
source has made the message invisible (or written the lease) but its job is not
registered. `claiming()` marks that moment, and `abandon` waits for it to end, so
a stop in the middle of a claim releases the claimed job instead of leaving it
invisible for a whole visibility timeout.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from processor.logs import logger

CLAIM_WAIT_S = 3.0  # longest wait for a claim in progress at abandon; a long poll on an empty queue holds nothing


class ShutdownRequested(Exception):
    """Raised out of an idle wait (a long poll, a folder watch) when a stop signal arrives."""


class Shutdown:
    def __init__(self, grace_s: float, exit: Callable[[int], None] = os._exit) -> None:
        self.grace_s = grace_s
        self.requested = threading.Event()
        self._idle = threading.Event()
        self._abandon_hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._claiming = threading.Lock()
        self._stop_hooks: list[Callable[[], None]] = []
        self._exit = exit
        self._over = threading.Event()  # the run has ended by itself

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def set_idle(self, idle: bool, *, interrupt: bool = True) -> None:
        """Idle: waiting for work, nothing to finish. A signal then ends the wait at once.

        `interrupt=False` is for threads other than the waiting one: it marks the state only.
        """
        if idle:
            self._idle.set()
            if interrupt and self.requested.is_set():
                raise ShutdownRequested
        else:
            self._idle.clear()

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Register what gives back, at a stop, the jobs claimed but not started."""
        with self._lock:
            self._stop_hooks.append(hook)

    def on_abandon(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Register what to release if the process must leave mid-job; returns the unregister call."""
        with self._lock:
            self._abandon_hooks.append(hook)
        return lambda: self._remove(hook)

    @contextmanager
    def claiming(self) -> Iterator[None]:
        """Around taking a lease from a source and registering (or releasing) it: `abandon` waits for it."""
        with self._claiming:
            yield

    def _remove(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if hook in self._abandon_hooks:
                self._abandon_hooks.remove(hook)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            logger.warning(f"second {name}: releasing in-flight work and leaving now", extra={"stage": "shutdown"})
            self.abandon()
            return
        self.requested.set()
        if self._idle.is_set():
            logger.info(f"{name}: idle, leaving", extra={"stage": "shutdown"})
            raise ShutdownRequested
        logger.info(f"{name}: finishing the job in hand (grace {self.grace_s:g} s), taking no new one",
                    extra={"stage": "shutdown"})
        threading.Thread(target=self._stop_in_order, name="shutdown", daemon=True).start()

    def _stop_in_order(self) -> None:
        """Stop intake, put back what has not started, give the job in hand its grace, release what is held, exit.

        The order is what keeps every job moving: intake stops first (the flag is set by
        now), so nothing new is claimed while the rest runs; the jobs claimed ahead go back
        at once, so another worker starts them instead of waiting out our grace; the job
        in hand then has the grace to finish, its result written and its lease acked;
        only what is still held after it is released, visible again at once rather than
        after a whole lease, just before the process leaves.
        """
        with self._lock:
            hooks = list(self._stop_hooks)
        for hook in hooks:
            try:
                hook()
            except Exception as exc:  # the rest of the sequence still runs
                logger.error(f"could not give back unstarted work: {exc!r}", extra={"stage": "shutdown"})
        if self._over.wait(self.grace_s):
            return
        logger.warning("grace period over: releasing in-flight work and leaving", extra={"stage": "shutdown"})
        self.abandon()

    def abandon(self, claim_wait_s: float = CLAIM_WAIT_S) -> None:
        self.requested.set()  # a claim that completes now is released by its taker, not handed on
        claimed = self._claiming.acquire(timeout=claim_wait_s)
        try:
            with self._lock:
                hooks = list(self._abandon_hooks)
            for hook in hooks:
                try:
                    hook()
                except Exception as exc:  # leaving anyway: the lease expires on its own
                    logger.error(f"could not release in-flight work: {exc}", extra={"stage": "shutdown"})
            sys.stdout.flush()
            self._exit(0)
        finally:  # only reached when `exit` returns (tests)
            if claimed:
                self._claiming.release()

    def cancel(self) -> None:
        """The run is over: the sequence under way, if any, has nothing left to wait for."""
        self._over.set()
