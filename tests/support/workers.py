"""Workers as a user runs them: the real `f5-batch` command in child processes, their settings, environment and
logs, and the one way to start a worker process and to wait for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from processor.settings import Settings
from processor.storage.volume import Volume

from tests.support.aws import Endpoint
from tests.support.paths import REPO
from tests.support.waiting import wait_until


def local_settings(tmp: Path, volume: Volume, **fields: Any) -> Settings:
    """A CPU worker on the tiny model with its inbox, outbox and processing folder under `tmp`."""
    return Settings.model_validate({"inbox": str(tmp / "inbox"), "outbox": str(tmp / "outbox"),
                                    "volume": volume.root, "model": "tiny", "device": "cpu",
                                    "processing_dir": tmp / "processing", **fields})


def local_worker_args(root: Path, volume: Volume, *extra: str) -> list[str]:
    """`f5-batch run` on the tiny model with its inbox, outbox and processing folder under `root`."""
    return ["run", "--inbox", str(root / "inbox"), "--outbox", str(root / "outbox"), "--volume", str(volume.root),
            "--model", "tiny", "--processing-dir", str(root / "processing"), *extra]


def worker_env(endpoint_url: str, base: Endpoint, volume: Volume, tmp: Path, **extra: str) -> dict[str, str]:
    """The whole environment of a CPU worker on the tiny model that talks to `endpoint_url` with `base`'s keys."""
    env = {**base.env(), "AWS_ENDPOINT_URL": endpoint_url, "F5B_VOLUME": str(volume.root), "F5B_MODEL": "tiny",
           "F5B_DEVICE": "cpu", "F5B_PROCESSING_DIR": str(tmp / "processing"), "F5B_S3_PATH_STYLE": "true",
           "F5B_RECEIVE_WAIT_S": "1", "F5B_POLL_S": "0.3"}
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real `f5-batch` command in a child process, as a user runs it; `env` is added to this process's."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def start_worker(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`f5-batch <args>` started in a child process that outlives this call, its stdout and stderr to `log`.

    `env` is the child's whole environment (default: this process's), as `worker_env` or `Endpoint.env()` make one:
    added to this process's, it would bring back the AWS settings `Endpoint.env()` leaves out.
    """
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "processor", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


@contextmanager
def worker_processes(count: int, args: list[str], env: dict[str, str],
                     logs: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` workers (`f5-batch run <args>`, logs in `logs/worker-<n>.log`); on exit stop them with SIGTERM (they
    release what they hold) and reap them."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = [start_worker("run", *args, log=logs / f"worker-{n}.log", env=env) for n in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_for_exit(workers: list[subprocess.Popen[str]], logs: list[Path], timeout: float) -> None:
    """Every worker exits 0 within `timeout` seconds in all; otherwise all are killed and the test fails with the
    log of the one that did not."""
    deadline = time.monotonic() + timeout
    for worker, log in zip(workers, logs, strict=True):
        try:
            assert worker.wait(max(1.0, deadline - time.monotonic())) == 0, log.read_text()[-3000:]
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            pytest.fail(f"worker did not finish in {timeout} s: {log.read_text()[-3000:]}")


def log_says(log: Path, *texts: str) -> Callable[[], bool]:
    """A condition for `wait_until`: the log exists and holds each of `texts`."""
    def check() -> bool:
        if not log.exists():
            return False
        text = log.read_text()
        return all(t in text for t in texts)

    return check


def wait_for_text(log: Path, text: str, timeout: float = 120) -> None:
    """Until `text` is in the log; the test fails with the log's tail if it does not come within `timeout` s."""
    if not wait_until(log_says(log, text), timeout, interval=0.05):
        pytest.fail(f"no {text!r} in the log: {log.read_text()[-2000:]}")


def log_tails(folder: Path, lines: int = 40) -> str:
    """The last lines of every worker log under `folder`: what a failed scenario shows."""
    parts = []
    for log in sorted(folder.rglob("worker-*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.relative_to(folder)}\n" + "\n".join(tail))
    return "\n".join(parts)
