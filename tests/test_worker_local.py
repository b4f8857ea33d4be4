"""The worker end to end: real CLI, real F5-TTS classes (tiny random weights), local inbox and outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.results import read_result
from tests.support.waiting import wait_until
from tests.support.workers import local_worker_args, run_cli, start_worker

GOOD = {
    "plain": manifest("Good morning. The weather today is calm and clear."),
    "flac-seeded": manifest("A sentence in FLAC with a fixed seed.", format="flac", seed=42, id="flac-job"),
    "mp3": manifest("An MP3 with fewer steps.", format="mp3", nfe_step=8),
    "ogg": manifest("An Ogg Vorbis file, a little faster.", format="ogg", speed=1.3),
    "long": manifest(" ".join(["This sentence is one of many that make the text long enough to be split."] * 5),
                     nfe_step=4),
    "trimmed": manifest("Silences removed.", remove_silence=True, nfe_step=4),
}
BAD = {
    "broken": ("{not json", "invalid_json"),
    "typo": (manifest(speeed=1.2), "invalid_manifest"),
    "blank-text": (manifest(text="  \n "), "invalid_manifest"),
    "no-transcript": ({"text": "hi", "voice": "voices/narrator.wav"}, "voice_text_required"),
    "missing-voice": (manifest(voice="voices/missing.wav"), "voice_not_found"),
    "not-audio": (manifest(voice="voices/not-audio.wav"), "voice_unreadable"),
    "escape": (manifest(voice="../outside.wav"), "voice_not_allowed"),
}


@dataclass
class Run:
    inbox: Path
    outbox: Path
    processing: Path
    stdout: str
    returncode: int

    def result(self, job_id: str) -> dict:
        return read_result(self.outbox, job_id)


def worker_args(run_root: Path, volume: Volume) -> list[str]:
    return local_worker_args(run_root, volume, "--once")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Run:
    root = tmp_path_factory.mktemp("batch")
    inbox = inbox_with_voice(root)
    (inbox / "voices" / "not-audio.wav").write_text("this is text, not a RIFF file\n" * 50)
    (root / "outside.wav").write_bytes(VOICE.read_bytes())
    for name, data in GOOD.items():
        write_manifest(inbox, name, data)
    for name, (data, _) in BAD.items():
        write_manifest(inbox, name, data)
    out = run_cli(*worker_args(root, tiny_volume))
    return Run(inbox, root / "outbox", root / "processing", out.stdout + out.stderr, out.returncode)


def job_id(name: str) -> str:
    return GOOD.get(name, {}).get("id", name)


def test_worker_drains_inbox_and_exits_zero(batch: Run) -> None:
    assert batch.returncode == 0, batch.stdout
    assert not list(batch.inbox.glob("*.json")), "every manifest was taken"
    assert not list((batch.inbox / ".claims").iterdir()), "no claim left behind"
    assert len(list((batch.inbox / ".done").glob("*.json"))) == len(GOOD) + len(BAD)


@pytest.mark.parametrize("name", GOOD)
def test_good_manifest_succeeds_with_decodable_24khz_audio(batch: Run, name: str) -> None:
    result = batch.result(job_id(name))
    fmt = GOOD[name].get("format", "wav")
    assert result["status"] == "succeeded", result["error"]
    assert result["error"] is None and result["attempts"] == 1
    assert result["audio"] == f"{job_id(name)}/audio.{fmt}"
    assert Path(result["audio_uri"]) == (batch.outbox / result["audio"]).resolve()
    samples, rate = sf.read(batch.outbox / result["audio"], dtype="float32")
    assert rate == result["sample_rate"] == 24000
    assert samples.ndim == 1 and np.isfinite(samples).all() and np.abs(samples).max() > 0
    # mp3 and vorbis decoders may add or drop a frame's worth of padding.
    tolerance = 1 / 24000 if fmt in ("wav", "flac") else 0.1
    assert len(samples) / rate == pytest.approx(result["duration_s"], abs=tolerance)


def test_result_record_is_complete(batch: Run) -> None:
    result = batch.result("flac-job")
    keys = {"id", "status", "audio", "format", "sample_rate", "duration_s", "seed", "model", "error", "attempts",
            "timings", "manifest_sha256"}
    assert keys <= result.keys()
    assert (result["id"], result["format"], result["seed"], result["model"]) == ("flac-job", "flac", 42, "tiny")
    assert set(result["timings"]) == {"fetch", "asr", "synth", "write", "queued", "total"}
    assert result["timings"]["synth"] > 0
    for job in map(job_id, GOOD):
        timings = batch.result(job)["timings"]
        assert timings["total"] >= sum(v for k, v in timings.items() if k != "total"), (job, timings)
    assert max(batch.result(job_id(name))["timings"]["queued"] for name in GOOD) > 0, "one waited for another's batch"
    manifest_bytes = (batch.inbox / ".done" / "flac-seeded.json").read_bytes()
    import hashlib

    assert result["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()


def test_seed_is_derived_from_id_when_the_manifest_has_none(batch: Run) -> None:
    from processor.manifest import seed_from_id

    assert batch.result("plain")["seed"] == seed_from_id("plain")


def test_durations_follow_f5_tts_duration_estimate(batch: Run) -> None:
    from tests.support.oracle import expected_single_chunk_seconds

    for name in ("plain", "flac-seeded", "ogg"):
        data = GOOD[name]
        expected = expected_single_chunk_seconds(VOICE, data["voice_text"], data["text"], data.get("speed", 1.0))
        assert batch.result(job_id(name))["duration_s"] == pytest.approx(expected, abs=0.5 / 24000), name


def test_long_text_is_chunked_and_cross_faded(batch: Run) -> None:
    log = (batch.outbox / "long" / "log.jsonl").read_text().splitlines()
    assert batch.result("long")["duration_s"] > 2 * batch.result("plain")["duration_s"]
    assert any(json.loads(line)["stage"] == "synthesized" for line in log)


@pytest.mark.parametrize("name", BAD)
def test_bad_manifest_fails_alone_with_its_code(batch: Run, name: str) -> None:
    result = batch.result(name)
    assert result["status"] == "failed"
    assert result["error"]["code"] == BAD[name][1]
    assert len(result["error"]["message"]) > 10
    assert result["audio"] is None and result["duration_s"] is None
    assert not list((batch.outbox / name).glob("audio.*"))


def test_log_jsonl_tells_the_job_story(batch: Run) -> None:
    stages = [json.loads(line)["stage"] for line in (batch.outbox / "plain" / "log.jsonl").read_text().splitlines()]
    assert stages == ["claimed", "fetched", "synthesized", "written", "finished"]
    failed = [json.loads(line) for line in (batch.outbox / "missing-voice" / "log.jsonl").read_text().splitlines()]
    assert any(e["stage"] == "failed" and e["code"] == "voice_not_found" for e in failed)


def test_stdout_is_json_lines_with_job_and_stage(batch: Run) -> None:
    events = [json.loads(line) for line in batch.stdout.splitlines() if line.startswith("{")]
    assert any(e.get("stage") == "finished" and e.get("job") == "flac-job" for e in events)


def test_log_jsonl_holds_the_same_events_as_stdout(batch: Run) -> None:
    printed = [json.loads(line) for line in batch.stdout.splitlines() if line.startswith("{")]
    for name in ("plain", "missing-voice"):
        for event in map(json.loads, (batch.outbox / job_id(name) / "log.jsonl").read_text().splitlines()):
            same = {k: v for k, v in event.items() if k != "ts"}
            assert any(same.items() <= e.items() for e in printed), event


def test_nothing_written_outside_the_outbox_and_processing_files_removed(batch: Run) -> None:
    assert sorted(p.name for p in batch.outbox.iterdir()) == sorted(job_id(n) for n in [*GOOD, *BAD])
    assert [p for p in batch.processing.rglob("*") if p.is_file()] == []
    assert not any(p.name.endswith(".part") for p in batch.outbox.rglob("*"))


def test_rerun_skips_jobs_that_have_a_result(batch: Run, tiny_volume: Volume) -> None:
    before = (batch.outbox / "plain" / "result.json").read_bytes()
    write_manifest(batch.inbox, "plain", GOOD["plain"])
    out = run_cli(*worker_args(batch.inbox.parent, tiny_volume))
    assert out.returncode == 0, out.stderr
    assert (batch.outbox / "plain" / "result.json").read_bytes() == before
    assert "a result for this id exists already" in out.stdout
    assert "inbox drained: 0 succeeded, 0 failed, 1 skipped (a result existed), 0 left" in out.stdout


def test_a_killed_worker_s_job_is_recovered_and_completed_once(tmp_path: Path, tiny_volume: Volume) -> None:
    import os
    import signal
    import socket
    import time

    inbox = inbox_with_voice(tmp_path)
    long_text = " ".join(["A long text keeps the worker busy for a while."] * 12)
    write_manifest(inbox, "slow", manifest(long_text, nfe_step=8))
    args = worker_args(tmp_path, tiny_volume)
    args.remove("--once")
    victim = start_worker(*args, log=tmp_path / "victim.log")
    claims = inbox / ".claims"
    wait_until(lambda: claims.is_dir() and bool(list(claims.iterdir())), 120)
    assert list(claims.iterdir()), "the worker claimed the manifest"
    time.sleep(1.0)  # into the synthesis
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert not (tmp_path / "outbox" / "slow" / "result.json").exists()
    assert len(list(claims.iterdir())) == 1, "the dead worker's claim is still there"
    assert any(p.is_file() for p in (tmp_path / "processing").rglob("*")), "it died with files in its scratch folder"

    out = run_cli(*worker_args(tmp_path, tiny_volume))
    assert out.returncode == 0, out.stdout + out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    [recovered] = [e for e in events if e.get("stage") == "recovered"]
    assert (recovered["job"], recovered["previous_owner"]) == ("slow", f"{socket.gethostname()}.{victim.pid}")
    assert recovered["level"] == "warning" and "no longer running" in recovered["msg"] and recovered["stale_s"] >= 0
    result = read_result(tmp_path / "outbox", "slow")
    assert result["status"] == "succeeded"
    assert list(claims.iterdir()) == []
    assert [p for p in (tmp_path / "processing").rglob("*") if p.is_file()] == []
