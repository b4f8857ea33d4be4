"""A held lease: from its claim to its one end, kept alive by a heartbeat.

A lease ends exactly once, by whoever asks first: the job's outcome (ack,
retry later, or release when it did not start) on the output thread, or the
release when the worker must leave mid-job (`abandon`). The end runs under a
lock, so an end under way (a result being written) is let finish rather than
released on top.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from processor.heartbeat import Heartbeat
from processor.shutdown import Shutdown
from processor.storage import Lease

ABANDON_WAIT_S = 2.0  # at abandon, longest wait for a heartbeat in flight or an end under way


class HeldLease:
    def __init__(self, lease: Lease, heartbeat_s: float, shutdown: Shutdown) -> None:
        self.lease = lease
        self._ending = threading.Lock()
        self._ended = False
        self._unregister = shutdown.on_abandon(self.abandon)
        self._heartbeat = Heartbeat(lease, heartbeat_s).start()

    @property
    def name(self) -> str:
        return self.lease.name

    @property
    def body(self) -> bytes:
        return self.lease.body

    def end(self, settle: Callable[[Lease], None]) -> None:
        """End the lease by the job's outcome; nothing happens if it has ended already."""
        self._heartbeat.stop()  # from here on, no beat can extend what the end settles
        try:
            self._end_once(settle, wait_s=-1)
        finally:
            self._unregister()

    def abandon(self) -> None:
        """The worker leaves mid-job: release the lease, unless its end is under way."""
        self._heartbeat.stop(ABANDON_WAIT_S)  # a beat landing after the release would hide the job again
        self._end_once(lambda lease: lease.release(), wait_s=ABANDON_WAIT_S)

    def _end_once(self, settle: Callable[[Lease], None], wait_s: float) -> None:
        if not self._ending.acquire(timeout=wait_s):
            return
        try:
            if not self._ended:
                self._ended = True
                settle(self.lease)
        finally:
            self._ending.release()
