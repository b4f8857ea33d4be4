"""Operations: /metrics counts what the outbox shows, /healthz and `f5-batch health` answer, idle pods exit."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from processor.app import build_worker
from processor.health import HealthReporter, check
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.results import all_results
from tests.support.waiting import wait_until
from tests.support.workers import local_settings, run_cli, start_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet, or already gone
        return 0, ""


def test_metrics_after_a_few_jobs_match_the_outbox(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = inbox_with_voice(tmp_path)
    for i in range(3):
        write_manifest(inbox, f"good-{i}", manifest("Hi there.", nfe_step=2))
    write_manifest(inbox, "bad-voice", manifest("Hi there.", voice="voices/missing.wav"))
    port = free_port()
    worker = build_worker(local_settings(tmp_path, tiny_volume, metrics_port=port, exit_when_idle_s=3))
    scraped: dict[str, Any] = {}

    def scraped_all_four() -> bool:
        code, text = get(f"http://127.0.0.1:{port}/metrics")
        if code == 200 and samples(text).get('f5batch_jobs_total{status="failed"}') == 1 and \
                sum(v for k, v in samples(text).items() if k.startswith("f5batch_jobs_total")) == 4:
            scraped["metrics"] = samples(text)
            scraped["healthz"] = get(f"http://127.0.0.1:{port}/healthz")
            return True
        return False

    def scrape_while_idle() -> None:
        wait_until(scraped_all_four, 60, interval=0.2)

    scraper = threading.Thread(target=scrape_while_idle)
    scraper.start()
    assert worker.run(once=False) == 4, "watch mode: the idle limit ends it"
    scraper.join()
    assert worker.exited_idle
    metrics = scraped["metrics"]
    results = list(all_results(tmp_path / "outbox").values())
    succeeded = [r for r in results if r["status"] == "succeeded"]
    assert metrics['f5batch_jobs_total{status="succeeded"}'] == len(succeeded) == 3
    assert abs(metrics["f5batch_audio_seconds_total"] - sum(r["duration_s"] for r in succeeded)) < 1e-6
    assert metrics['f5batch_stage_seconds_count{stage="synth"}'] == 3
    assert abs(metrics['f5batch_stage_seconds_sum{stage="synth"}'] - sum(r["timings"]["synth"] for r in succeeded)) \
        < 0.01
    assert metrics["f5batch_jobs_in_flight"] == 0
    code, body = scraped["healthz"]
    assert code == 200 and json.loads(body)["healthy"] is True


def test_health_command_follows_the_running_worker(tmp_path: Path, tiny_volume: Volume) -> None:
    processing = tmp_path / "processing"
    inbox_with_voice(tmp_path)
    env = {"F5B_INBOX": str(tmp_path / "inbox"), "F5B_OUTBOX": str(tmp_path / "outbox"),
           "F5B_VOLUME": str(tiny_volume.root), "F5B_MODEL": "tiny", "F5B_DEVICE": "cpu",
           "F5B_PROCESSING_DIR": str(processing)}
    assert run_cli("health", env=env).returncode == 1, "no worker yet"
    worker = start_worker("run", "--exit-when-idle", "600", log=tmp_path / "worker.log", env={**os.environ, **env})
    try:
        wait_until((processing / "health.json").exists, 60, interval=0.2)
        healthy = run_cli("health", env=env)
        assert healthy.returncode == 0 and "healthy" in healthy.stdout, healthy.stdout + healthy.stderr
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    assert run_cli("health", env=env).returncode == 1, "the worker left: not healthy"


def test_a_stuck_synthesis_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    busy_since = [time.monotonic() - 100.0]
    with HealthReporter(path, lambda: busy_since[0], stuck_after_s=50):
        healthy, why = check(path)
        assert not healthy and "has run" in why
        busy_since[0] = time.monotonic()
        HealthReporter(path, lambda: busy_since[0], stuck_after_s=50)._write()
        assert check(path)[0]
    assert not check(path)[0], "the file goes with the worker"


def test_an_idle_worker_exits_zero_after_the_limit(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox_with_voice(tmp_path)
    env = {"F5B_VOLUME": str(tiny_volume.root), "F5B_PROCESSING_DIR": str(tmp_path / "processing")}
    started = time.monotonic()
    out = run_cli("run", "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "outbox"),
                  "--model", "tiny", "--device", "cpu", "--exit-when-idle", "2", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"idle for 2 s: 0 succeeded, 0 failed, 0 left", out.stdout + out.stderr)
    assert time.monotonic() - started < 60
