"""Hostile input, end to end: one batch of bad manifests and bad voices through the real worker CLI.

Every bad case fails alone with a stable code and a `failed` result; the worker exits 0, each manifest
gets exactly one result, the good manifests between them still succeed, and nothing is written outside
`<outbox>/<job id>/`.
The cases and their expected codes are data in `tests/support/hostile.py` (the reliability report counts
the same batch).

Decisions these tests pin down (see `processor.audio.load_voice`):
- A WAV whose data chunk declares more whole frames than the file holds is truncated (an interrupted
  upload: its transcript no longer matches what is left) and fails with `voice_unreadable`, wherever the
  cut falls. A WAV cut inside its last frame keeps its whole frames and succeeds.
- MP3 (and other formats without an exact declared length) decode whatever frames are there: a
  half-uploaded MP3 still over 0.3 s succeeds; one cut to a few bytes fails with `voice_unreadable`.
- 32-bit float WAV (plain, or WAVE_FORMAT_EXTENSIBLE) decodes like its 16-bit original; NaN or infinite
  samples fail with `voice_unreadable` before decoding; 64-bit float WAV fails with `voice_unreadable`.
- Length over `MAX_VOICE_S` is `voice_too_long`: from the header for WAV/FLAC/OGG (no decoding; the
  hour-long FLAC here is silence, which costs nothing to store and is never decoded), after decoding
  for MP3 (the MP3 here is a real 320 s tone).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.audio import MAX_VOICE_S, prepare_voice
from processor.errors import PermanentError
from processor.settings import Settings
from processor.storage.local import LocalVoices
from processor.storage.volume import Volume

from tests.support.hostile import (
    ABSOLUTE_ID_TARGET,
    BAD,
    GOOD,
    NARRATOR,
    RAW_GOOD,
    WORKER_ENV,
    job_id,
    m,
    write_batch,
)
from tests.support.paths import REPO, VOICE, VOICE_TEXT
from tests.support.results import all_results, read_result
from tests.support.workers import local_worker_args, run_cli


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Batch:
    root: Path
    inbox: Path
    outbox: Path
    processing: Path
    output: str
    returncode: int
    root_before: set[str]
    neighbours_before: set[str]
    neighbours_after: set[str]
    voices_before: dict[str, str]

    def result(self, job_id: str) -> dict[str, Any]:
        return read_result(self.outbox, job_id)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Batch:
    root = tmp_path_factory.mktemp("hostile")
    inbox = write_batch(root)
    root_before = {p.name for p in root.iterdir()}
    neighbours_before = {p.name for p in root.parent.iterdir()}
    voices_before = tree(inbox / "voices")
    out = run_cli(*local_worker_args(root, tiny_volume, "--once"), env=WORKER_ENV, timeout=280)
    neighbours_after = {p.name for p in root.parent.iterdir()}  # now: later tests add their own folders there
    return Batch(root, inbox, root / "outbox", root / "processing", out.stdout + out.stderr, out.returncode,
                 root_before, neighbours_before, neighbours_after, voices_before)


def test_the_corpus_is_large_enough() -> None:
    assert len(BAD) >= 30
    assert len({job_id(name) for name in [*BAD, *GOOD, *RAW_GOOD]}) == len(BAD) + len(GOOD) + len(RAW_GOOD)


@pytest.mark.parametrize("name", BAD)
def test_bad_input_fails_alone_with_its_code(batch: Batch, name: str) -> None:
    _, code, fragment = BAD[name]
    result = batch.result(job_id(name))
    assert result["status"] == "failed"
    assert result["error"]["code"] == code, result["error"]
    assert fragment in result["error"]["message"]
    assert result["id"] == job_id(name)
    assert result["audio"] is None and result["audio_uri"] is None and result["duration_s"] is None
    assert not list((batch.outbox / job_id(name)).glob("audio.*"))


@pytest.mark.parametrize("name", [*GOOD, *RAW_GOOD])
def test_good_input_in_the_same_batch_succeeds(batch: Batch, name: str) -> None:
    result = batch.result(name)
    assert result["status"] == "succeeded", result["error"]
    samples, rate = sf.read(batch.outbox / result["audio"], dtype="float32")
    assert rate == 24000 and len(samples) > 0 and np.isfinite(samples).all()


def test_worker_survives_and_each_manifest_has_exactly_one_result(batch: Batch) -> None:
    assert batch.returncode == 0, batch.output[-5000:]
    names = [*BAD, *GOOD, *RAW_GOOD]
    assert not list(batch.inbox.glob("*.json")), "every manifest was taken"
    assert not list((batch.inbox / ".claims").iterdir()), "no claim left behind"
    assert len(list((batch.inbox / ".done").glob("*.json"))) == len(names)
    results = sorted(p.relative_to(batch.outbox).parent.name for p in batch.outbox.rglob("result.json"))
    assert results == sorted(job_id(n) for n in names)


def test_nothing_is_written_outside_the_job_folders(batch: Batch) -> None:
    expected = {job_id(n) for n in [*BAD, *GOOD, *RAW_GOOD]}
    for path in batch.outbox.rglob("*"):
        parts = path.relative_to(batch.outbox).parts
        assert parts[0] in expected, path
        if path.is_file():
            assert len(parts) == 2 and (parts[1] in ("result.json", "log.jsonl") or parts[1].startswith("audio.")), path
    assert {p.name for p in batch.root.iterdir()} == batch.root_before | {"outbox", "processing"}
    assert batch.neighbours_after == batch.neighbours_before
    assert not (batch.root / ABSOLUTE_ID_TARGET).exists() and not (batch.root / "escape").exists()
    assert {p.name for p in batch.inbox.iterdir()} == {"voices", ".claims", ".done"}
    assert tree(batch.inbox / "voices") == batch.voices_before, "voices are read, never written"
    assert [p for p in batch.processing.rglob("*") if p.is_file()] == []


def test_results_and_logs_are_valid_utf8_json(batch: Batch) -> None:
    for path in batch.outbox.rglob("*.json*"):
        text = path.read_bytes().decode("utf-8")
        for line in text.splitlines() if path.suffix == ".jsonl" else [text]:
            json.loads(line)


# --- the same guards, one level down ---------------------------------------------------------------


@pytest.fixture
def voices(tmp_path: Path) -> LocalVoices:
    (tmp_path / "inbox" / "voices").mkdir(parents=True)
    (tmp_path / "job").mkdir()
    return LocalVoices(tmp_path / "inbox", max_bytes=1000)


def test_local_voices_refuse_a_file_over_max_bytes_before_copying(voices: LocalVoices, tmp_path: Path) -> None:
    (voices.root / "voices" / "at-limit.wav").write_bytes(b"x" * 1000)
    (voices.root / "voices" / "over.wav").write_bytes(b"x" * 1001)
    assert voices.fetch("voices/at-limit.wav", tmp_path / "job").stat().st_size == 1000
    (tmp_path / "job" / "voice.wav").unlink()
    with pytest.raises(PermanentError) as err:
        voices.fetch("voices/over.wav", tmp_path / "job")
    assert err.value.code == "voice_too_large" and "1001 bytes" in err.value.message
    assert list((tmp_path / "job").iterdir()) == []
    default = LocalVoices.open(str(voices.root), Settings(), None, None)  # type: ignore[arg-type]
    assert default.max_bytes == 50 * 2**20


def test_local_voices_refuse_an_empty_file_before_decoding(voices: LocalVoices, tmp_path: Path) -> None:
    (voices.root / "voices" / "empty.wav").write_bytes(b"")
    with pytest.raises(PermanentError) as err:
        voices.fetch("voices/empty.wav", tmp_path / "job")
    assert err.value.code == "voice_unreadable"
    assert list((tmp_path / "job").iterdir()) == []


def prepared(path: Path, workdir: Path) -> np.ndarray:
    return prepare_voice(path, VOICE_TEXT, workdir).samples


def test_float_wav_decodes_like_its_16_bit_original(tmp_path: Path) -> None:
    speech, rate = sf.read(VOICE, dtype="float32")
    sf.write(tmp_path / "plain.wav", speech, rate, subtype="FLOAT")
    sf.write(tmp_path / "extensible.wav", speech, rate, format="WAVEX", subtype="FLOAT")
    original = prepared(VOICE, tmp_path)
    np.testing.assert_array_equal(prepared(tmp_path / "plain.wav", tmp_path), original)
    np.testing.assert_array_equal(prepared(tmp_path / "extensible.wav", tmp_path), original)


@pytest.mark.parametrize("keep", [44 + 2, 44 + 1000, 44 + 1001, len(NARRATOR) // 2, len(NARRATOR) - 2])
def test_a_wav_cut_short_of_its_header_is_unreadable_wherever_the_cut_falls(tmp_path: Path, keep: int) -> None:
    (tmp_path / "cut.wav").write_bytes(NARRATOR[:keep])
    with pytest.raises(PermanentError) as err:
        prepared(tmp_path / "cut.wav", tmp_path)
    assert err.value.code == "voice_unreadable" and "truncated" in err.value.message


def test_a_wav_cut_inside_its_last_frame_keeps_its_whole_frames(tmp_path: Path) -> None:
    (tmp_path / "cut.wav").write_bytes(NARRATOR[:-1])
    np.testing.assert_array_equal(prepared(tmp_path / "cut.wav", tmp_path), prepared(VOICE, tmp_path))


@pytest.mark.parametrize(("fraction", "outcome"),
                         [(0.5, "ok"), (0.05, "voice_unreadable"), (0.001, "voice_unreadable")])
def test_a_cut_mp3_decodes_what_is_there(tmp_path: Path, fraction: float, outcome: str) -> None:
    speech, rate = sf.read(VOICE, dtype="float32")
    sf.write(tmp_path / "whole.mp3", speech, rate, format="MP3")
    data = (tmp_path / "whole.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: max(int(len(data) * fraction), 1)])
    if outcome == "ok":
        assert 0.3 * rate < prepared(tmp_path / "cut.mp3", tmp_path).shape[-1] < len(speech)
    else:
        with pytest.raises(PermanentError) as err:
            prepared(tmp_path / "cut.mp3", tmp_path)
        assert err.value.code == outcome


def test_length_is_checked_from_the_header_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sf.SoundFile(tmp_path / "long.wav", "w", 1000, 1, "PCM_U8") as f:  # 301 s in 301 KB
        f.write(np.zeros(1000 * (MAX_VOICE_S + 1), np.float32))

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a clip the header already showed to be too long")

    import pydub

    monkeypatch.setattr(pydub.AudioSegment, "from_file", no_decoding)
    with pytest.raises(PermanentError) as err:
        prepared(tmp_path / "long.wav", tmp_path)
    assert err.value.code == "voice_too_long"


class NoSynthesizer:
    model_name = "none"
    sample_rate = 24000
    max_batch = 1
    device = "cpu"

    def synthesize(self, request: object) -> np.ndarray:
        raise AssertionError("a manifest that fails to parse is never synthesized")

    def synthesize_batch(self, requests: object) -> list[np.ndarray]:
        raise AssertionError("a manifest that fails to parse is never synthesized")


def test_a_manifest_file_name_that_is_not_utf8_fails_alone(tmp_path: Path) -> None:
    from processor.models import Models
    from processor.storage.local import LocalInbox, LocalOutbox
    from processor.storage.markers import LocalMarkers
    from processor.storage.volume import Volume
    from processor.storage.workdir import WorkDir
    from processor.worker import Worker

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with open(os.path.join(os.fsencode(inbox), b"bad-\xff-name.json"), "wb") as f:
        f.write(json.dumps(m()).encode())
    settings = Settings(inbox=str(inbox), outbox=str(tmp_path / "outbox"), processing_dir=tmp_path / "work")
    worker = Worker(inbox=LocalInbox(inbox, stale_after_s=settings.claim_stale_s, settle_s=0),
                    outbox=LocalOutbox(tmp_path / "outbox"),
                    voices=LocalVoices(inbox, max_bytes=settings.voice_max_bytes),
                    markers=LocalMarkers(tmp_path / "outbox", "test", ttl_s=60),
                    models=Models(settings, Volume(tmp_path / "volume"), load=lambda name: NoSynthesizer()),
                    workdir=WorkDir(tmp_path / "work"), settings=settings)
    assert worker.run(once=True) == 1
    [data] = all_results(tmp_path / "outbox").values()
    assert data["status"] == "failed" and data["error"]["code"] == "invalid_manifest"
    assert data["manifest"].encode("utf-8")


def test_nothing_lands_next_to_the_worker_s_working_directory(batch: Batch) -> None:
    assert batch.returncode == 0
    for name in ("escape", "escape.json", ABSOLUTE_ID_TARGET, "a", "outside.wav"):  # the CLI runs in REPO
        assert not (REPO / name).exists() and not (REPO.parent / name).exists()
