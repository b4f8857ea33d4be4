"""The ASR model: the tiny Whisper the fixture seeds, loaded from the volume only, and doctor's checks of it.

In-process with the tiny random Whisper (`tests.support.volumes.make_tiny_volume` builds it with the builder
`f5-batch seed --tiny` uses): its transcripts are gibberish, but the same audio always gives the same text.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from processor.checks import Context
from processor.checks.model import EXAMPLE_VOICE
from processor.doctor import run_checks
from processor.seeding.asr_sources import TinyAsrSource
from processor.settings import Settings
from processor.storage.volume import Volume
from processor.transcription import ASR_RATE, WhisperTranscriber, load_transcriber, resample

ASR_CHECKS = ("asr.complete", "asr.loadable")


@pytest.fixture
def isolated_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading points the caches at the volume and turns the hub off, for the process: undone after the test.

    The hub is also pointed at a closed port, so a load that reached for it would fail, not download."""
    for key in (*Volume(Path(".")).cache_environment(), "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
        monkeypatch.delenv(key)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The suite runs two processes on two shared cores: torch's second thread would only wait for a core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def voice_seconds(seconds: float) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(EXAMPLE_VOICE), dtype="float32", always_2d=True)
    return data.mean(axis=1)[: int(seconds * rate)], int(rate)


def test_the_fixture_carries_the_tiny_whisper_as_seed_tiny_writes_it(tiny_volume: Volume) -> None:
    folder = tiny_volume.asr("tiny")
    assert folder.is_complete()
    assert set(folder.recorded_checksums()) == {file.target for file in TinyAsrSource().files()}
    assert folder.config()["random_weights"] is True


def test_tiny_whisper_transcribes_offline_deterministically_and_loads_once_for_two_threads(
    tiny_volume: Volume, isolated_environ: None, one_thread: None
) -> None:
    assert load_transcriber(tiny_volume, "whisper-large-v3-turbo", "cpu") is None  # not seeded: no ASR
    transcriber = load_transcriber(tiny_volume, "tiny", "cpu")
    assert isinstance(transcriber, WhisperTranscriber) and transcriber.model_name == "tiny"
    assert transcriber.loads == 0  # lazily: nothing is loaded until a clip needs it
    samples, rate = voice_seconds(3.0)

    texts: list[str] = []
    barrier = threading.Barrier(2)

    def transcribe() -> None:
        barrier.wait()
        texts.append(transcriber.transcribe(samples, rate, "en"))

    threads = [threading.Thread(target=transcribe) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert transcriber.loads == 1
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert len(texts) == 2 and texts[0] == texts[1] and isinstance(texts[0], str) and texts[0]

    started = time.perf_counter()
    at_16k = transcriber.transcribe(resample(samples, rate, ASR_RATE), ASR_RATE, "en")
    # About 0.1 s on an idle core; the bound only catches a model that stopped being tiny (the suite shares cores).
    assert time.perf_counter() - started < 5.0
    assert rate != ASR_RATE and at_16k == texts[0]  # the clip is resampled to Whisper's 16 kHz before anything else
    assert isinstance(transcriber.transcribe(samples, rate, None), str)  # no language: Whisper detects one
    assert transcriber.loads == 1


def asr_checks(tmp_path: Path, volume: Volume, asr_model: str) -> dict[str, tuple[str, str]]:
    settings = Settings(volume=volume.root, model="tiny", asr_model=asr_model, device="cpu",
                        inbox=str(tmp_path / "inbox"), outbox=str(tmp_path / "outbox"),
                        processing_dir=tmp_path / "processing")
    return {c.name: (c.status, c.detail) for c in run_checks(Context(settings, environ={}), ASR_CHECKS)}


def test_doctor_checks_the_asr_model_when_seeded_and_passes_without_one(
    tmp_path: Path, tiny_volume: Volume, isolated_environ: None, one_thread: None
) -> None:
    found = asr_checks(tmp_path, tiny_volume, "tiny")
    assert found["asr.complete"][0] == "pass" and "8 files match SHA256SUMS" in found["asr.complete"][1]
    assert found["asr.loadable"][0] == "pass" and "tiny loaded on cpu" in found["asr.loadable"][1]

    unseeded = asr_checks(tmp_path, tiny_volume, "whisper-large-v3-turbo")
    assert [status for status, _ in unseeded.values()] == ["pass", "pass"]
    assert "no ASR model: voices need a transcript" in unseeded["asr.complete"][1]

    damaged = Volume(tmp_path / "volume")
    shutil.copytree(tiny_volume.asr("tiny").path, damaged.asr("tiny").path)
    with damaged.asr("tiny").path.joinpath("vocab.json").open("r+b") as f:
        f.write(b"X")  # same size, other bytes: only the digest can tell
    found = asr_checks(tmp_path, damaged, "tiny")
    assert found["asr.complete"][0] == "fail" and "vocab.json does not match SHA256SUMS" in found["asr.complete"][1]
    assert found["asr.loadable"] == ("warn", "skipped: asr.complete failed")


# --- the worker: the third source of a transcript, and the part kept of a long clip ----------------------------


@pytest.fixture(scope="module")
def asr_results(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> dict[str, dict[str, object]]:
    """One worker run with the tiny Whisper: ten jobs on one clip without a transcript, and a clip too long for the
    model with its whole transcript."""
    from tests.support.manifests import inbox_with_voice, manifest, write_manifest
    from tests.support.paths import VOICE, VOICE_TEXT
    from tests.support.results import all_results
    from tests.support.workers import local_worker_args, run_cli
    from tests.test_transcripts import long_voice

    root = tmp_path_factory.mktemp("asr-worker")
    inbox = inbox_with_voice(root)
    (inbox / "voices" / "bare.wav").write_bytes(VOICE.read_bytes())  # no sidecar next to it
    long_voice(inbox / "voices" / "long.wav")
    for n in range(10):
        write_manifest(inbox, f"shared-{n}", {k: v for k, v in manifest(f"Job {n}.", voice="voices/bare.wav",
                                                                         nfe_step=2).items() if k != "voice_text"})
    write_manifest(inbox, "clipped", manifest("A short line.", voice="voices/long.wav",
                                              voice_text=" ".join([VOICE_TEXT] * 3), nfe_step=2))
    out = run_cli(*local_worker_args(root, tiny_volume, "--once", "--asr-model", "tiny"),
                  env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})  # the hub is never asked
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    ready = [line for line in out.stdout.splitlines() if '"stage": "ready"' in line]
    assert ready and '"asr": "tiny"' in ready[0]
    return {**all_results(root / "outbox"), "_inbox": {"path": str(inbox)}}


def test_a_voice_without_a_transcript_is_transcribed_once_for_the_ten_jobs_that_share_it(
        asr_results: dict[str, dict[str, object]]) -> None:
    shared = [asr_results[f"shared-{n}"] for n in range(10)]
    assert all(r["status"] == "succeeded" and r["voice_text_source"] == "asr" for r in shared), shared
    assert len({r["voice_text"] for r in shared}) == 1 and shared[0]["voice_text"]
    transcribed = [r for r in shared if r["timings"]["asr"] > 0]  # type: ignore[index]
    assert len(transcribed) == 1, "one transcription, then the prepared voice is reused"


def test_a_long_clip_is_spoken_with_asr_s_transcript_of_the_part_kept(
        asr_results: dict[str, dict[str, object]], tiny_volume: Volume, tmp_path: Path, one_thread: None,
        isolated_environ: None) -> None:
    from processor.audio import normalize_voice_text, prepare_reference

    result = asr_results["clipped"]
    assert result["status"] == "succeeded", result["error"]
    assert result["voice_text_source"] == "asr"
    kept = prepare_reference(Path(str(asr_results["_inbox"]["path"])) / "voices" / "long.wav", tmp_path)
    assert kept.clipped_from_s is not None and kept.duration_s < 12
    heard = WhisperTranscriber(tiny_volume.asr("tiny"), "cpu").transcribe(kept.samples.mean(axis=0),
                                                                          kept.sample_rate, None)
    assert result["voice_text"] == normalize_voice_text(heard).strip(), "what the model was given: the kept part's"
