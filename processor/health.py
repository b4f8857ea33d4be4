"""Is this worker healthy? A file for `f5-batch health` (the image's HEALTHCHECK), and an optional HTTP port.

The running worker rewrites `<processing_dir>/health.json` every few seconds:
its pid, the time, and whether a job has been in synthesis for longer than its
time limit allows (stuck). `f5-batch health` exits 0 only when that file is
fresh, its process alive and nothing is stuck. With `F5B_METRICS_PORT` the same
answer is served at `/healthz` (200 or 503), and Prometheus metrics at `/metrics`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from processor.metrics import Metrics
from processor.storage.local import pid_alive

HEALTH_FILE = "health.json"
BEAT_S = 5.0
STALE_S = 60.0  # a file older than this: the worker is gone or frozen


def health_file(processing_dir: Path) -> Path:
    return processing_dir / HEALTH_FILE


@dataclass
class HealthReporter:
    """Writes the health file from a background thread while the worker runs."""

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
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.status()))
        os.replace(tmp, self.path)


def check(path: Path, stale_s: float = STALE_S) -> tuple[bool, str]:
    """The verdict of `f5-batch health`: healthy or not, and why."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"no worker health file at {path}: the worker is not running (or not yet started)"
    age = time.time() - float(status.get("updated", 0))
    if age > stale_s:
        return False, f"health file not updated for {age:.0f} s: the worker is frozen or gone"
    pid = int(status.get("pid", 0))
    if pid <= 0 or not pid_alive(pid):  # pid 0 would address our own process group
        return False, f"the worker (pid {status.get('pid')}) is not running"
    if not status.get("healthy"):
        return False, f"unhealthy: {status.get('reason')}"
    return True, f"healthy (pid {status['pid']}, updated {age:.0f} s ago)"


class StatusServer:
    """`/healthz` and `/metrics` on a port, in a daemon thread."""

    def __init__(self, port: int, metrics: Metrics, reporter: HealthReporter, host: str = "0.0.0.0") -> None:
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
            if self.path == "/metrics":
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
            elif self.path == "/healthz":
                status = reporter.status()
                self._send(200 if status["healthy"] else 503, "application/json", json.dumps(status))
            else:
                self._send(404, "text/plain", "not found: /healthz or /metrics\n")

        def _send(self, code: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds would drown the job log."""

    return Handler
