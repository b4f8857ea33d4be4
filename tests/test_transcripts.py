"""Where a voice's transcript comes from (the manifest, a sidecar next to the clip), and a clip too long for the
model refused rather than spoken with a transcript of audio it never hears. One real worker run, no ASR seeded.

(With an ASR model on the volume, the last resort and the clipped case are transcribed: tests/test_asr.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.errors import VoiceUnreadable
from processor.storage.s3 import S3Voices
from processor.storage.voice_cache import VoiceCache
from processor.storage.volume import Volume
from processor.transcripts import read_sidecar, sidecar_of

from tests.support.aws import Endpoint, unique_name
from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.paths import VOICE, VOICE_TEXT
from tests.support.results import all_results
from tests.support.workers import local_worker_args, run_cli

SIDECAR = "A sidecar transcript of the narrator."
FAST = {"nfe_step": 2}


def long_voice(path: Path, copies: int = 3) -> float:
    """The narrator three times over with a pause between: about 22 s of speech, cut by F5-TTS at a silence."""
    speech, rate = sf.read(VOICE, dtype="float32")
    pause = np.zeros(int(0.8 * rate), dtype=np.float32)
    sf.write(path, np.concatenate([part for _ in range(copies) for part in (speech, pause)]), rate, subtype="PCM_16")
    return float(sf.info(path).duration)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("transcripts")
    inbox = inbox_with_voice(root)
    (inbox / "voices" / "narrator.txt").write_text(SIDECAR + "\n")
    (inbox / "voices" / "bare.wav").write_bytes(VOICE.read_bytes())  # no sidecar
    long_voice(inbox / "voices" / "long.wav")
    without = {k: v for k, v in manifest("Hello there.", **FAST).items() if k != "voice_text"}
    write_manifest(inbox, "sidecar", without)
    write_manifest(inbox, "manifest-wins", manifest("Hello there.", **FAST))
    write_manifest(inbox, "blank-is-absent", {**without, "voice_text": "  "})
    write_manifest(inbox, "no-transcript", {**without, "voice": "voices/bare.wav"})
    write_manifest(inbox, "clipped", manifest("A short line.", voice="voices/long.wav",
                                              voice_text=" ".join([VOICE_TEXT] * 3), **FAST))
    out = run_cli(*local_worker_args(root, tiny_volume, "--once"))
    assert "Traceback" not in out.stdout + out.stderr
    return all_results(root / "outbox")


def test_a_sidecar_next_to_the_clip_is_the_transcript(results: dict[str, dict[str, Any]]) -> None:
    for job in ("sidecar", "blank-is-absent"):
        assert results[job]["status"] == "succeeded", results[job]["error"]
        assert (results[job]["voice_text"], results[job]["voice_text_source"]) == (SIDECAR, "sidecar")


def test_the_manifest_s_voice_text_wins_over_the_sidecar(results: dict[str, dict[str, Any]]) -> None:
    assert results["manifest-wins"]["status"] == "succeeded"
    assert (results["manifest-wins"]["voice_text"], results["manifest-wins"]["voice_text_source"]) == \
        (VOICE_TEXT, "manifest")


def test_no_transcript_anywhere_names_the_three_ways(results: dict[str, dict[str, Any]]) -> None:
    error = results["no-transcript"]["error"]
    assert error["code"] == "voice_text_required"
    for way in ('"voice_text"', "'voices/bare.txt'", "f5-batch seed --asr"):
        assert way in error["message"], error["message"]


def test_a_clip_too_long_for_the_model_is_refused_saying_both_lengths_and_both_fixes(
        results: dict[str, dict[str, Any]]) -> None:
    error = results["clipped"]["error"]
    assert error["code"] == "voice_clipped", error
    assert " s long; the model keeps " in error["message"]
    for fix in ("trim the clip to 12 s or less", "f5-batch seed --asr"):
        assert fix in error["message"]


# --- the sidecar's own rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "sidecar"), [("voices/a.wav", "voices/a.txt"), ("a.flac", "a.txt"),
                                              ("s3://b/v/a.mp3", "s3://b/v/a.txt"), ("voices/a", "voices/a.txt")])
def test_the_sidecar_is_the_clip_with_txt_for_its_suffix(ref: str, sidecar: str) -> None:
    assert sidecar_of(ref) == sidecar


@pytest.mark.parametrize(("body", "said"), [(b"\xff\xfe", "not UTF-8"), (b"x" * 9000, "over 8000 bytes"),
                                            ("a\u202eb".encode(), "U\\+202E"), (b"y" * 2001, "2001 characters")])
def test_a_sidecar_is_held_to_the_voice_text_rules(body: bytes, said: str) -> None:
    with pytest.raises(VoiceUnreadable, match=said):
        read_sidecar("voices/a.txt", body)


def test_a_blank_sidecar_is_no_transcript() -> None:
    assert read_sidecar("voices/a.txt", b"\xef\xbb\xbf \n") is None


def test_an_s3_sidecar_is_read_beside_the_clip(moto_endpoint: Endpoint, tmp_path: Path) -> None:
    from processor.retries import CallRetry

    s3 = moto_endpoint.client("s3")
    bucket = unique_name("sidecar")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="voices/a.txt", Body=SIDECAR.encode())
    voices = S3Voices(s3, bucket, frozenset({bucket}), 2**20, VoiceCache(tmp_path / "cache", 0),
                      CallRetry(max_attempts=1, total_s=5))
    assert voices.transcript("voices/a.wav") == SIDECAR
    assert voices.transcript("voices/none.wav") is None


def test_submit_takes_the_sidecar_along_when_the_manifest_has_no_transcript(tmp_path: Path) -> None:
    src = inbox_with_voice(tmp_path / "src")
    (src / "voices" / "narrator.txt").write_text(SIDECAR)
    without = {k: v for k, v in manifest("Hello there.").items() if k != "voice_text"}
    write_manifest(src, "bare", without)
    write_manifest(src, "told", manifest("Hello there."))
    out = run_cli("submit", str(src / "told.json"), "--inbox", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "a" / "voices" / "narrator.txt").exists(), "a manifest with voice_text needs no sidecar"
    out = run_cli("submit", str(src / "bare.json"), "--inbox", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b" / "voices" / "narrator.txt").read_text() == SIDECAR
    dry = run_cli("submit", str(src / "bare.json"), "--inbox", "s3://bkt/inbox/", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "-> s3://bkt/voices/narrator.txt" in dry.stdout and "-> s3://bkt/voices/narrator.wav" in dry.stdout
