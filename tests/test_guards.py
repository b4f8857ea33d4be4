"""Resource guards: disk space, per-job time limit, out-of-memory, no leftovers after many jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import soundfile as sf

from processor.app import build_worker
from processor.settings import Settings
from processor.storage.volume import Volume
from processor.worker import Worker

from tests.support.manifests import manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.results import read_result

SLOW = " ".join(["This long text keeps the worker busy for several seconds."] * 12)


def make_inbox(tmp: Path, seconds: float = 1.5) -> Path:
    """An inbox with a short cut of the example voice: short prompts keep 200 real jobs fast."""
    inbox = tmp / "inbox"
    (inbox / "voices").mkdir(parents=True)
    samples, rate = sf.read(VOICE, dtype="int16")
    sf.write(inbox / "voices" / "narrator.wav", samples[: int(seconds * rate)], rate)
    return inbox


def worker_for(tmp: Path, volume: Volume, **fields: Any) -> Worker:
    settings = Settings(inbox=str(tmp / "inbox"), outbox=str(tmp / "outbox"), volume=volume.root, model="tiny",
                        device="cpu", processing_dir=tmp / "processing", retry_initial_s=0.01, retry_max_s=0.01,
                        **fields)
    return build_worker(settings)


def result(tmp: Path, job: str) -> dict[str, Any]:
    return read_result(tmp / "outbox", job)


def test_a_full_processing_disk_fails_the_job_after_its_attempts(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = make_inbox(tmp_path)
    write_manifest(inbox, "needs-space", manifest("Hi there.", nfe_step=2))
    worker = worker_for(tmp_path, tiny_volume, processing_min_free_bytes=10**18, max_attempts=2)
    assert worker.run(once=True) == 1
    got = result(tmp_path, "needs-space")
    assert (got["status"], got["error"]["code"], got["attempts"]) == ("failed", "processing_disk_full", 2)
    assert "bytes free" in got["error"]["message"]


def test_a_job_past_its_time_limit_fails_and_the_next_one_runs(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = make_inbox(tmp_path, seconds=4)
    write_manifest(inbox, "a-stuck", manifest(SLOW, nfe_step=32))
    write_manifest(inbox, "b-quick", manifest("Hi there.", nfe_step=2))
    worker = worker_for(tmp_path, tiny_volume, job_timeout_s=2.0)
    assert worker.run(once=True) == 2
    stuck = result(tmp_path, "a-stuck")
    assert (stuck["status"], stuck["error"]["code"]) == ("failed", "job_timeout")
    assert stuck["timings"]["total"] < 10, "stopped within a sampling step of the limit, not at the end"
    assert result(tmp_path, "b-quick")["status"] == "succeeded"


def test_out_of_memory_is_transient_and_retried(tmp_path: Path, tiny_volume: Volume) -> None:
    import torch

    inbox = make_inbox(tmp_path)
    write_manifest(inbox, "oom-once", manifest("Hi there.", nfe_step=2))
    worker = worker_for(tmp_path, tiny_volume)
    calls = {"n": 0}

    def out_of_memory_on_first_forward(module: Any, args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model = worker.models.get(worker.models.default).model  # type: ignore[attr-defined]
    model.cfm.transformer.register_forward_pre_hook(out_of_memory_on_first_forward)
    assert worker.run(once=True) == 1
    got = result(tmp_path, "oom-once")
    assert (got["status"], got["attempts"]) == ("succeeded", 2)
    log = (tmp_path / "outbox" / "oom-once" / "log.jsonl").read_text()
    assert "accelerator out of memory" in log


def test_two_hundred_jobs_leave_no_processing_files(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = make_inbox(tmp_path)
    for i in range(200):
        voice = "voices/narrator.wav" if i % 4 else "voices/missing.wav"  # failures must clean up too
        write_manifest(inbox, f"job-{i:03d}", manifest("Hi there.", nfe_step=2, voice=voice))
    worker = worker_for(tmp_path, tiny_volume)
    processing = tmp_path / "processing"

    def leftovers() -> list[Path]:
        return [p for p in processing.rglob("*") if p.is_file()]

    assert worker.run(once=True) == 200
    assert leftovers() == []
    statuses = [result(tmp_path, f"job-{i:03d}")["status"] for i in range(200)]
    assert statuses.count("succeeded") == 150 and statuses.count("failed") == 50
    assert [p.name for p in processing.iterdir()] == [worker.workdir.identity], "one empty folder per worker"
