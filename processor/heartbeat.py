"""Keeps a lease alive while its job runs: a background thread calls `extend` at an interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from processor.logs import JobLog


class Heartbeat:
    def __init__(self, name: str, extend: Callable[[], None], interval_s: float, log: JobLog) -> None:
        self.name = name
        self.extend = extend
        self.interval_s = interval_s
        self.log = log  # the job's: a missed beat is said under the job's id, in its log.jsonl too
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Returns once no beat can happen any more (or after `timeout_s`): from then on only the caller
        touches the lease."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.extend()
            except Exception as exc:  # a missed beat is logged; the write-once result still guards duplicates
                self.log.event("heartbeat", f"could not extend the lease on {self.name}: {exc}", logging.WARNING)
