"""Is each worker here healthy? A file per worker for `f5-batch health` (the image's HEALTHCHECK), and a status port.

Every running worker rewrites its own `<processing_dir>/health/<host>.<pid>.json`
every few seconds (its identity, as its scratch folder is named): its pid, the
time, and whether a job has been in synthesis for longer than its time limit
allows (stuck); it removes the file as it exits. `f5-batch health` reads every
file of this host (this container): it exits 0 only when at least one worker is
running and each one found is fresh, alive and not stuck. Two workers on one host
each answer for themselves, so one leaving does not make the other look dead.
With `F5B_METRICS_PORT` the worker's own answer is served at `/healthz` (200 or
503), and Prometheus metrics at `/metrics`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from processor.metrics import Metrics
from processor.storage.local import pid_alive

HEALTH_FOLDER = "health"
BEAT_S = 5.0
STALE_S = 60.0  # a file older than this: the worker is gone or frozen
# Markers of a container: Docker, Podman, RunPod, Kubernetes. There the status port must be reachable from outside.
CONTAINER_FILES = ("/.dockerenv", "/run/.containerenv")
CONTAINER_VARIABLES = ("RUNPOD_POD_ID", "KUBERNETES_SERVICE_HOST")


def health_folder(processing_dir: Path) -> Path:
    return processing_dir / HEALTH_FOLDER


def health_file(processing_dir: Path, identity: str) -> Path:
    """The file of the worker `identity` (`host.pid`, its WorkDir's)."""
    return health_folder(processing_dir) / f"{identity}.json"


@dataclass
class HealthReporter:
    """Writes the worker's health file from a background thread while the worker runs."""

    path: Path
    busy_since: Callable[[], float | None]  # monotonic start of the synthesis in progress, None when idle
    stuck_after_s: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        since = self.busy_since()
        busy_s = time.monotonic() - since if since is not None else 0.0
        healthy = busy_s <= self.stuck_after_s
        return {"healthy": healthy, "pid": os.getpid(), "updated": time.time(), "busy_s": round(busy_s, 1),
                "reason": "" if healthy else f"one synthesis call has run {busy_s:.0f} s"}

    def __enter__(self) -> HealthReporter:
        forget_dead(self.path.parent)
        self._write()
        self._thread = threading.Thread(target=self._beat, name="health", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.path.unlink(missing_ok=True)  # a worker that left is not a healthy one

    def _beat(self) -> None:
        while not self._stop.wait(BEAT_S):
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")  # not *.json: never read half-written
        tmp.write_text(json.dumps(self.status()))
        os.replace(tmp, self.path)


def forget_dead(folder: Path, host: str | None = None) -> None:
    """Remove the files of this host's workers that were killed before removing their own (as WorkDir does)."""
    host = host or socket.gethostname()
    for path in folder.glob(f"{glob_escape(host)}.*.json"):
        pid = pid_of(path, host)
        if pid is not None and not pid_alive(pid):
            path.unlink(missing_ok=True)


def check(path: Path, stale_s: float = STALE_S) -> tuple[bool, str]:
    """One worker's verdict: healthy or not, and why."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, "not running: no health file (not started yet, or gone)"
    pid = int(status.get("pid", 0))
    if pid <= 0 or not pid_alive(pid):  # pid 0 would address our own process group
        return False, "not running: its process is gone (killed before removing its health file)"
    age = time.time() - float(status.get("updated", 0))
    if age > stale_s:
        return False, f"frozen: its health file was not updated for {age:.0f} s"
    if not status.get("healthy"):
        return False, f"unhealthy: {status.get('reason')}"
    return True, f"healthy, updated {age:.0f} s ago"


def check_workers(processing_dir: Path, pid: int | None = None, host: str | None = None) -> tuple[bool, list[str]]:
    """The verdict of `f5-batch health`: every worker of this host found healthy, at least one; a line per worker."""
    host = host or socket.gethostname()
    folder = health_folder(processing_dir)
    if pid is not None:
        paths = [health_file(processing_dir, f"{host}.{pid}")]
    else:
        paths = sorted(folder.glob(f"{glob_escape(host)}.*.json"), key=lambda p: pid_of(p, host) or 0)
    if not paths:
        return False, [f"no worker is running here: no health file in {folder} for host {host}"]
    verdicts = [(path, *check(path)) for path in paths]
    return all(ok for _, ok, _ in verdicts), [f"worker {p.stem} (pid {pid_of(p, host)}): {why}"
                                              for p, _, why in verdicts]


def pid_of(path: Path, host: str) -> int | None:
    pid = path.stem.removeprefix(f"{host}.")
    return int(pid) if pid.isdigit() else None


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def metrics_address(bind: str, environ: Mapping[str, str] = os.environ, root: Path = Path("/")) -> str:
    """The address the status port listens on: `bind`, or for "auto" every interface in a container, else loopback."""
    if bind != "auto":
        return bind
    in_container = any((root / marker.lstrip("/")).exists() for marker in CONTAINER_FILES) or \
        any(environ.get(name) for name in CONTAINER_VARIABLES)
    return "0.0.0.0" if in_container else "127.0.0.1"


class StatusServer:
    """`/healthz` and `/metrics` on a port, in a daemon thread."""

    def __init__(self, port: int, metrics: Metrics, reporter: HealthReporter, host: str = "127.0.0.1") -> None:
        handler = _handler(metrics, reporter)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="status", daemon=True)

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: Metrics, reporter: HealthReporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(with_body=True)

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def _answer(self, with_body: bool) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render(), with_body)
            elif self.path == "/healthz":
                status = reporter.status()
                self._send(200 if status["healthy"] else 503, "application/json", json.dumps(status).encode(),
                           with_body)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: /healthz or /metrics\n", with_body)

        def _send(self, code: int, content_type: str, body: bytes, with_body: bool) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds would drown the job log."""

    return Handler
