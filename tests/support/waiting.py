"""The one way the tests, the scenarios and the server fixtures wait for something: poll until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(done: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Call `done` every `interval` seconds until it returns true or `timeout` seconds have passed.

    Returns whether it held, asking once more at the deadline. It never fails by itself: a test that must not go on
    without the condition asserts the result (``assert wait_until(...), "what it waited for"``), and a scenario
    that counts what never came goes on to count.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(interval)
    return done()
