"""`f5-batch health`: one health file per worker, so two workers on one host answer for themselves."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from processor.health import HealthReporter, check, check_workers, forget_dead, health_file, metrics_address
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice
from tests.support.waiting import wait_until
from tests.support.workers import run_cli, worker_processes

HOST = socket.gethostname()


def test_stopping_one_of_two_workers_leaves_health_passing_for_the_other(tmp_path: Path, tiny_volume: Volume) -> None:
    processing = tmp_path / "processing"
    inbox_with_voice(tmp_path)
    env = {"F5B_INBOX": str(tmp_path / "inbox"), "F5B_OUTBOX": str(tmp_path / "outbox"),
           "F5B_VOLUME": str(tiny_volume.root), "F5B_MODEL": "tiny", "F5B_DEVICE": "cpu",
           "F5B_PROCESSING_DIR": str(processing)}
    with worker_processes(2, [], env={**os.environ, **env}, logs=tmp_path / "logs") as pair:
        first, second = pair
        files = [health_file(processing, f"{HOST}.{w.pid}") for w in pair]
        assert wait_until(lambda: all(f.exists() for f in files), 120, interval=0.2), "both workers up"
        ok, lines = check_workers(processing)
        assert ok and len(lines) == 2 and all(": healthy" in line for line in lines), lines

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        assert not files[0].exists(), "a worker removes its own file as it leaves"
        other = run_cli("health", env=env)
        assert other.returncode == 0, other.stdout + other.stderr
        [line] = other.stdout.splitlines()
        assert f"(pid {second.pid}): healthy" in line, line

        stopped = run_cli("health", "--pid", str(first.pid), env=env)
        assert stopped.returncode == 1
        assert f"pid {first.pid}" in stopped.stdout and "not running" in stopped.stdout, stopped.stdout
        assert check_workers(processing, pid=second.pid)[0]
    ok, lines = check_workers(processing)
    assert not ok and "no worker is running here" in lines[0], "both left"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_worker_killed_before_removing_its_file_is_not_running(tmp_path: Path) -> None:
    pid = dead_pid()
    ours = HealthReporter(health_file(tmp_path, f"{HOST}.{os.getpid()}"), lambda: None, stuck_after_s=60)
    ours._write()
    killed_status = json.dumps({**json.loads(ours.path.read_text()), "pid": pid})
    killed = health_file(tmp_path, f"{HOST}.{pid}")
    killed.write_text(killed_status)
    elsewhere = health_file(tmp_path, f"other-host.{pid}")
    elsewhere.write_text(killed_status)
    ok, lines = check_workers(tmp_path)
    assert not ok and len(lines) == 2, "only this host's workers; one of them is gone"
    assert any(f"pid {pid}" in line and "process is gone" in line for line in lines), lines
    forget_dead(tmp_path / "health")
    assert not killed.exists() and ours.path.exists() and elsewhere.exists()
    assert check_workers(tmp_path) == (True, [f"worker {HOST}.{os.getpid()} (pid {os.getpid()}): healthy, "
                                              "updated 0 s ago"])


def test_a_stuck_synthesis_is_unhealthy(tmp_path: Path) -> None:
    path = health_file(tmp_path, f"{HOST}.{os.getpid()}")
    busy_since = [time.monotonic() - 100.0]
    with HealthReporter(path, lambda: busy_since[0], stuck_after_s=50):
        healthy, why = check(path)
        assert not healthy and "has run" in why
        assert not check_workers(tmp_path)[0]
        busy_since[0] = time.monotonic()
        HealthReporter(path, lambda: busy_since[0], stuck_after_s=50)._write()
        assert check(path)[0]
    assert not check(path)[0], "the file goes with the worker"


def test_the_status_port_listens_on_loopback_unless_in_a_container(tmp_path: Path) -> None:
    assert metrics_address("auto", environ={}, root=tmp_path) == "127.0.0.1"
    assert metrics_address("10.0.0.5", environ={"RUNPOD_POD_ID": "x"}, root=tmp_path) == "10.0.0.5"
    for variable in ("RUNPOD_POD_ID", "KUBERNETES_SERVICE_HOST"):
        assert metrics_address("auto", environ={variable: "x"}, root=tmp_path) == "0.0.0.0"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").touch()
    assert metrics_address("auto", environ={}, root=tmp_path) == "0.0.0.0"
