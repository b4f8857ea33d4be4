"""The worker's stages overlap (fetch and upload while synthesizing), prefetch is bounded, voices are prepared once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from processor.app import build_worker
from processor.pipeline import Prefetch
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.results import read_result
from tests.support.workers import local_settings

LONG = " ".join(["This sentence keeps the synthesizer busy for a little while."] * 4)


def events(tmp: Path, job: str) -> dict[str, float]:
    lines = (tmp / "outbox" / job / "log.jsonl").read_text().splitlines()
    return {e["stage"]: e["ts"] for e in map(json.loads, lines)}


def test_the_next_job_is_claimed_and_its_voice_ready_while_one_synthesizes(tmp_path: Path,
                                                                            tiny_volume: Volume) -> None:
    inbox = inbox_with_voice(tmp_path)
    write_manifest(inbox, "a-long", manifest(LONG, nfe_step=16))
    write_manifest(inbox, "b-next", manifest("Hi there.", nfe_step=2))
    assert build_worker(local_settings(tmp_path, tiny_volume)).run(once=True) == 2
    a, b = events(tmp_path, "a-long"), events(tmp_path, "b-next")
    assert b["claimed"] < a["synthesized"] and b["fetched"] < a["synthesized"], (a, b)


def test_without_prefetch_a_job_is_claimed_only_after_the_previous_one_is_done(tmp_path: Path,
                                                                                tiny_volume: Volume) -> None:
    inbox = inbox_with_voice(tmp_path)
    write_manifest(inbox, "a-long", manifest(LONG, nfe_step=16))
    write_manifest(inbox, "b-next", manifest("Hi there.", nfe_step=2))
    assert build_worker(local_settings(tmp_path, tiny_volume, prefetch=0)).run(once=True) == 2
    a, b = events(tmp_path, "a-long"), events(tmp_path, "b-next")
    assert b["claimed"] >= a["finished"], (a, b)


def test_a_voice_shared_by_many_jobs_is_fetched_and_prepared_once(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = inbox_with_voice(tmp_path)
    for i in range(4):
        write_manifest(inbox, f"same-{i}", manifest("Hi there.", nfe_step=2))
    worker = build_worker(local_settings(tmp_path, tiny_volume))
    assert worker.run(once=True) == 4
    assert (worker.prepared.misses, worker.prepared.hits) == (1, 3)

    # A changed clip under the same name, or another transcript, is prepared again: never served stale.
    samples, rate = sf.read(VOICE, dtype="float32")
    sf.write(inbox / "voices" / "narrator.wav", samples[: len(samples) // 2], rate)
    write_manifest(inbox, "changed-clip", manifest("Hi there.", nfe_step=2))
    write_manifest(inbox, "other-text", manifest("Hi there.", nfe_step=2, voice_text="Another transcript."))
    assert worker.run(once=True) == 2
    assert worker.prepared.misses == 3
    for job in ("same-0", "changed-clip", "other-text"):
        assert read_result(tmp_path / "outbox", job)["status"] == "succeeded"


def test_prefetch_is_bounded_by_the_lease() -> None:
    prefetch = Prefetch(max_batch=4, ahead=8, lease_s=60)
    assert prefetch.limit(batch_s=0.0) == 12, "before any timing: one batch plus the configured prefetch"
    # a batch takes 10 s: half a lease holds 3 batches of 4
    assert prefetch.limit(batch_s=10.0) == 4 + 8
    assert prefetch.limit(batch_s=20.0) == 4 + 4
    # a batch longer than half the lease: nothing is claimed ahead
    assert prefetch.limit(batch_s=45.0) == 4


def test_held_jobs_never_exceed_the_limit(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = inbox_with_voice(tmp_path)
    for i in range(6):
        write_manifest(inbox, f"job-{i}", manifest("Hi there.", nfe_step=2))
    worker = build_worker(local_settings(tmp_path, tiny_volume, prefetch=1))
    claims = inbox / ".claims"
    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(list(claims.glob("*.json"))))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert worker.run(once=True) == 6
    finally:
        done.set()
        watcher.join()
    assert 1 <= most <= 2, "one job synthesizing plus one prefetched"
    assert np.all([(tmp_path / "outbox" / f"job-{i}" / "result.json").exists() for i in range(6)])
