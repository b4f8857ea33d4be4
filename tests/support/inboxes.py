"""Draining an inbox by hand, as the worker's intake does, for tests of the inboxes themselves."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from processor.storage import Inbox, Lease


def take_all(inbox: Inbox, *, once: bool = True, stop: threading.Event | None = None) -> Iterator[Lease]:
    """Every lease the inbox hands out, one claim after another, until it has none (`once`) or `stop` is set."""
    stop = stop or threading.Event()
    while leases := inbox.claim(once=once, stop=stop):
        yield from leases
