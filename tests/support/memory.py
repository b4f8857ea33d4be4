"""Peak memory of a real `f5-batch` process tree, sampled while it runs: what the memory-bomb tests assert on.

A hostile input must cost no more than a normal job: each test measures a baseline run (a normal manifest) and the
hostile run in the same test, and compares the peaks (`MEMORY_MARGIN`). The sampler sums the resident set of the
worker and all its children (pydub runs ffmpeg as a child), every `interval_s`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass

import psutil

from tests.support.paths import REPO

MEMORY_MARGIN = 300 * 2**20  # the bound: a hostile input costs at most this much over a normal job


@dataclass(frozen=True)
class Measured:
    returncode: int
    output: str
    peak_rss: int  # bytes, the largest sum over the process tree seen by any one sample

    @property
    def peak_mb(self) -> float:
        return self.peak_rss / 2**20


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of `process` and every descendant that is still there to be asked."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass  # exited between the listing and the question
    return total


def run_cli_measuring(*args: str, env: dict[str, str] | None = None, timeout: float = 240,
                      interval_s: float = 0.02) -> Measured:
    """`f5-batch <args>` as `tests.support.workers.run_cli` runs it, with the peak RSS of its process tree."""
    proc = subprocess.Popen([sys.executable, "-m", "processor", *args], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()
    watched = psutil.Process(proc.pid)

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval_s):
            peak = max(peak, tree_rss(watched))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise
    finally:
        done.set()
        sampler.join()
    return Measured(proc.returncode, output, peak)
