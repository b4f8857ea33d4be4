"""A held lease: from its claim to its one end, kept alive by a heartbeat.

A lease ends exactly once, by whoever asks first: the job's outcome (ack,
retry later, or release when it did not start) on the output thread, or the
release when the worker must leave mid-job (`abandon`). The end runs under a
lock, so an end under way (a result being written) is let finish rather than
released on top. The job's in-progress marker, once taken, rides on the lease:
the same heartbeat renews it, and it is dropped right after the lease's end.

The job's log starts here too, so that what the heartbeat and the lease's end
say carries the job's one id (and its queue message's id), as its other lines do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from processor.heartbeat import Heartbeat
from processor.logs import JobLog
from processor.manifest import safe_id
from processor.shutdown import Shutdown
from processor.storage import Lease
from processor.storage.markers import Marker

ABANDON_WAIT_S = 2.0  # at abandon, longest wait for a heartbeat in flight or an end under way


@runtime_checkable
class Delivered(Protocol):
    """A lease on a queue message: the message's id names the delivery in every line of its job's log."""

    @property
    def message_id(self) -> str: ...


class HeldLease:
    def __init__(self, lease: Lease, heartbeat_s: float, shutdown: Shutdown) -> None:
        self.lease = lease
        self.message_id = lease.message_id if isinstance(lease, Delivered) else None
        self.log = JobLog(safe_id(lease.name), {"message_id": self.message_id} if self.message_id else {})
        self._ending = threading.Lock()
        self._ended = False
        self.marker: Marker | None = None
        self._unregister = shutdown.on_abandon(self.abandon)
        self._heartbeat = Heartbeat(lease.name, self._beat, heartbeat_s, self.log).start()

    @property
    def name(self) -> str:
        return self.lease.name

    @property
    def body(self) -> bytes:
        return self.lease.body

    def attach(self, marker: Marker) -> None:
        """The job's in-progress marker: renewed with the lease from now on, dropped when it ends."""
        self.marker = marker

    def _beat(self) -> None:
        try:
            self.lease.extend()
        finally:  # a lease that could not be extended this time still keeps its marker alive
            if self.marker is not None:
                self.marker.renew()

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
                try:
                    settle(self.lease)
                finally:
                    self._drop_marker()
        finally:
            self._ending.release()

    def _drop_marker(self) -> None:
        if self.marker is None:
            return
        try:
            self.marker.drop()
        except Exception as exc:  # it expires on its own; a later delivery takes it over then
            self.log.event("marker", f"could not remove the in-progress marker of {self.marker.job_id}: {exc}",
                           logging.WARNING)
