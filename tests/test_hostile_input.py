"""Hostile input, end to end: one batch of bad manifests and bad voices through the real worker CLI.

Every bad case fails alone with a stable code and a `failed` result; the worker exits 0, each manifest
gets exactly one result, the good manifests between them still succeed, and nothing is written outside
`<outbox>/<job id>/`.

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
from processor.manifest import MAX_MANIFEST_BYTES, MAX_TEXT_CHARS, safe_id
from processor.settings import Settings
from processor.storage.local import LocalVoices
from processor.storage.volume import Volume

from conftest import REPO, VOICE, VOICE_TEXT, manifest, run_cli

MAX_VOICE_BYTES = 1_000_000  # F5B_VOICE_MAX_BYTES for the batch: big.wav is just over it
NARRATOR = VOICE.read_bytes()
FAST = {"nfe_step": 2}


def m(**fields: Any) -> dict[str, Any]:
    """A valid manifest with some fields replaced (None removes a field)."""
    data = manifest("Hello there.", **FAST)
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def voice(path: str, **fields: Any) -> dict[str, Any]:
    return m(voice=path, **fields)


def raw(text: str) -> bytes:
    """A manifest body written by hand, for what json.dumps cannot produce (escapes, literals)."""
    return text.encode("utf-8")


VT = json.dumps(VOICE_TEXT)
ABSOLUTE_ID_TARGET = "abs-escape"  # the id case's absolute path points here, inside the batch root

# name -> (manifest body, expected code, fragment the message must contain)
BAD: dict[str, tuple[Any, str, str]] = {
    # not JSON
    "malformed-json": (b"{not json", "invalid_json", "not valid JSON"),
    "truncated-json": (json.dumps(m()).encode()[:30], "invalid_json", "not valid JSON"),
    "empty-manifest": (b"", "invalid_json", "not valid JSON"),
    "invalid-utf8": (raw('{"text": "caf') + b"\xe9" + raw(f'", "voice": "voices/narrator.wav", "voice_text": {VT}}}'),
                     "invalid_json", "not UTF-8"),
    "utf16-json": (json.dumps(m()).encode("utf-16"), "invalid_json", "not UTF-8"),
    "nan-literal": (raw(f'{{"text": "hi", "speed": NaN, "voice": "voices/narrator.wav", "voice_text": {VT}}}'),
                    "invalid_json", "NaN"),
    "deeply-nested": (raw('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"), "invalid_json", "nested too deeply"),
    "huge-integer": (raw(f'{{"text": "hi", "seed": {"9" * 5000}, "voice": "voices/narrator.wav", "voice_text": {VT}}}'),
                     "invalid_json", "digits"),
    # JSON, but not an object
    "json-array": (b"[]", "invalid_manifest", "JSON object, not an array"),
    "json-string": (b'"text"', "invalid_manifest", "JSON object, not a string"),
    "json-number": (b"42", "invalid_manifest", "JSON object, not a number"),
    "json-null": (b"null", "invalid_manifest", "JSON object, not null"),
    "duplicate-field": (raw(f'{{"text": "a", "text": "b", "voice": "voices/narrator.wav", "voice_text": {VT}}}'),
                        "invalid_manifest", "more than once"),
    # wrong types
    "text-is-number": (m(text=123), "invalid_manifest", "text:"),
    "text-is-list": (m(text=["Hello"]), "invalid_manifest", "text:"),
    "speed-is-string": (m(speed="fast"), "invalid_manifest", "speed:"),
    "seed-is-float": (m(seed=1.5), "invalid_manifest", "seed:"),
    "nfe-step-is-bool": (m(nfe_step=True), "invalid_manifest", "nfe_step:"),
    "remove-silence-is-string": (m(remove_silence="yes"), "invalid_manifest", "remove_silence:"),
    "voice-is-object": (m(voice={"path": "voices/narrator.wav"}), "invalid_manifest", "voice:"),
    "voice-text-is-number": (m(voice_text=7), "invalid_manifest", "voice_text:"),
    "id-is-number": (m(id=5), "invalid_manifest", "id:"),
    # values
    "blank-text": (m(text=" \n\t "), "invalid_manifest", "text: must not be blank"),
    "empty-text": (m(text=""), "invalid_manifest", "text:"),
    "oversized-text": (m(text="a" * (MAX_TEXT_CHARS + 1)), "invalid_manifest", "text:"),
    "unknown-field": (m(speeed=1.2), "invalid_manifest", "speeed: unknown field"),
    "unknown-field-with-control-char": (raw(f'{{"te\\u0007xt": "hi", "text": "hi", "voice": "voices/narrator.wav", '
                                            f'"voice_text": {VT}}}'), "invalid_manifest", "U+0007"),
    "negative-seed": (m(seed=-1), "invalid_manifest", "seed:"),
    "seed-too-big": (m(seed=2**32), "invalid_manifest", "seed:"),
    "nfe-step-zero": (m(nfe_step=0), "invalid_manifest", "nfe_step:"),
    "nfe-step-huge": (m(nfe_step=100_000), "invalid_manifest", "nfe_step:"),
    "speed-out-of-range": (m(speed=50.0), "invalid_manifest", "speed:"),
    "unknown-format": (m(format="exe"), "invalid_manifest", "format:"),
    "future-version": (m(version=2), "invalid_manifest", "version:"),
    "manifest-over-size-cap": (m(**{"$comment": "x" * MAX_MANIFEST_BYTES}), "invalid_manifest", "limit"),
    "missing-text": (m(text=None), "invalid_manifest", "text: Field required"),
    "missing-voice-field": (m(voice=None), "invalid_manifest", "voice: Field required"),
    "missing-voice-text": (m(voice_text=None), "voice_text_required", "transcript"),
    "blank-voice-text": (m(voice_text="   "), "voice_text_required", "transcript"),
    "null-voice-text": (raw('{"text": "hi", "voice": "voices/narrator.wav", "voice_text": null}'),
                        "voice_text_required", "transcript"),
    # control characters and odd Unicode
    "bell-in-text": (m(text="Hello\u0007 there."), "invalid_manifest", "text: contains control character U+0007"),
    "nul-in-text": (m(text="Hello\u0000 there."), "invalid_manifest", "text: contains control character U+0000"),
    "ansi-escape-in-text": (m(text="\u001b[31mred\u001b[0m"), "invalid_manifest", "U+001B at position 0"),
    "c1-control-in-text": (m(text="Hello \u009b there."), "invalid_manifest", "U+009B"),
    "bidi-override-in-text": (m(text="Pay \u202eevil\u202c now."), "invalid_manifest",
                              "bidirectional control character U+202E at position 4"),
    "bidi-isolate-in-text": (m(text="a \u2066b\u2069"), "invalid_manifest", "U+2066"),
    "lone-surrogate-in-text": (raw(f'{{"text": "Hi \\ud800 there", "voice": "voices/narrator.wav", '
                                   f'"voice_text": {VT}}}'),
                               "invalid_manifest", "text: contains lone surrogate U+D800 at position 3"),
    "noncharacter-in-text": (m(text="Hello \uffff"), "invalid_manifest", "Unicode noncharacter U+FFFF"),
    "control-char-in-voice-text": (m(voice_text=VOICE_TEXT + "\u0008"), "invalid_manifest", "voice_text: contains"),
    "nul-in-voice-path": (voice("voices/narrator.wav\u0000.txt"), "invalid_manifest", "voice: contains"),
    # ids that would name a folder outside the outbox
    "id-dotdot": (m(id="../escape"), "invalid_manifest", "id:"),
    "id-dotdot-only": (m(id=".."), "invalid_manifest", "id:"),
    "id-slash": (m(id="a/b"), "invalid_manifest", "id:"),
    "id-absolute": (m(id="/ABSOLUTE/" + ABSOLUTE_ID_TARGET), "invalid_manifest", "id:"),
    "id-url": (m(id="https://evil.example/x"), "invalid_manifest", "id:"),
    "id-trailing-newline": (m(id="job\n"), "invalid_manifest", "id:"),
    "id-too-long": (m(id="a" * 129), "invalid_manifest", "id:"),
    "not a valid id!": (m(), "invalid_manifest", "not a valid job id"),
    # voice references that leave the inbox
    "voice-dotdot": (voice("../outside.wav"), "voice_not_allowed", "no '..'"),
    "voice-nested-dotdot": (voice("voices/../../outside.wav"), "voice_not_allowed", "no '..'"),
    "voice-backslash": (voice("voices\\..\\..\\outside.wav"), "voice_not_allowed", "relative path"),
    "voice-absolute": (voice("/ABSOLUTE/outside.wav"), "voice_not_allowed", "no absolute paths"),
    "voice-s3-url": (voice("s3://bucket/voices/narrator.wav"), "voice_not_allowed", "is a URL"),
    "voice-https-url": (voice("https://example.com/narrator.wav"), "voice_not_allowed", "is a URL"),
    "voice-file-url": (voice("file:///etc/passwd"), "voice_not_allowed", "is a URL"),
    # voice files
    "missing-voice": (voice("voices/missing.wav"), "voice_not_found", "not found"),
    "voice-is-a-folder": (voice("voices"), "voice_not_found", "not found"),
    "zero-length-voice": (voice("voices/empty.wav"), "voice_unreadable", "empty file"),
    "text-file-named-wav": (voice("voices/not-audio.wav"), "voice_unreadable", "could not be decoded"),
    "random-bytes-named-mp3": (voice("voices/random.mp3"), "voice_unreadable", "could not be decoded"),
    "truncated-wav": (voice("voices/truncated.wav"), "voice_unreadable", "truncated"),
    "truncated-wav-odd-cut": (voice("voices/truncated-odd.wav"), "voice_unreadable", "truncated"),
    "wav-header-only": (voice("voices/header-only.wav"), "voice_unreadable", "truncated"),
    "mp3-cut-to-a-few-bytes": (voice("voices/stub.mp3"), "voice_unreadable", "could not be decoded"),
    "nan-float-wav": (voice("voices/nan.wav"), "voice_unreadable", "NaN or infinite"),
    "inf-float-wav": (voice("voices/inf.wav"), "voice_unreadable", "NaN or infinite"),
    "float64-wav": (voice("voices/double.wav"), "voice_unreadable", "64-bit float"),
    "too-short-voice": (voice("voices/short.wav"), "voice_unreadable", "at least 0.3 s"),
    "silent-voice": (voice("voices/silent.wav"), "voice_unreadable", "silent"),
    "hour-long-flac": (voice("voices/hour.flac"), "voice_too_long", "3600.0 s long"),
    "over-five-minutes-mp3": (voice("voices/long.mp3"), "voice_too_long", "320.0 s long"),
    "over-size-voice": (voice("voices/big.wav"), "voice_too_large", "limit"),
}

GOOD: dict[str, dict[str, Any]] = {
    "good-plain": m(),
    "good-unicode": m(text="Café naïve, 你好, emoji 😀 and a\ttab.\nNew line; Ünïcödé stays valid."),
    "good-float32-wav": voice("voices/float.wav"),
    "good-half-uploaded-mp3": voice("voices/half.mp3"),
    "zz-good-after-everything": m(format="flac"),
}
RAW_GOOD = {
    "good-bom": b"\xef\xbb\xbf" + json.dumps(m()).encode(),  # a UTF-8 byte order mark (Windows editors) is tolerated
    "good-id-null": raw(f'{{"id": null, "text": "hi", "voice": "voices/narrator.wav", "voice_text": {VT}}}'),
}


def tone(seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def make_voices(folder: Path) -> None:
    folder.mkdir(parents=True)
    speech, rate = sf.read(VOICE, dtype="float32")
    (folder / "narrator.wav").write_bytes(NARRATOR)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "not-audio.wav").write_text("this is text, not a RIFF file\n" * 50)
    (folder / "random.mp3").write_bytes(np.random.default_rng(7).bytes(20_000))
    # Header declares 7.15 s; the file holds a third of it (cut on a whole frame, and on an odd byte).
    (folder / "truncated.wav").write_bytes(NARRATOR[: 44 + 2 * (len(speech) // 3)])
    (folder / "truncated-odd.wav").write_bytes(NARRATOR[: 44 + 2 * (len(speech) // 3) + 1])
    (folder / "header-only.wav").write_bytes(NARRATOR[:44])
    sf.write(folder / "speech.mp3", speech, rate, format="MP3")
    mp3 = (folder / "speech.mp3").read_bytes()
    (folder / "half.mp3").write_bytes(mp3[: len(mp3) // 2])
    (folder / "stub.mp3").write_bytes(mp3[:100])
    sf.write(folder / "float.wav", speech, rate, subtype="FLOAT")
    sf.write(folder / "nan.wav", np.full(2 * rate, np.nan, np.float32), rate, subtype="FLOAT")
    inf = speech.copy()
    inf[rate:] = np.inf
    sf.write(folder / "inf.wav", inf, rate, subtype="FLOAT")
    sf.write(folder / "double.wav", speech[: 2 * rate].astype(np.float64), rate, subtype="DOUBLE")
    sf.write(folder / "short.wav", tone(0.1, rate), rate)
    sf.write(folder / "silent.wav", np.zeros(3 * rate, np.float32), rate)
    with sf.SoundFile(folder / "hour.flac", "w", 8000, 1, "PCM_16", format="FLAC") as hour:
        for _ in range(60):
            hour.write(np.zeros(8000 * 60, np.int16))
    sf.write(folder / "long.mp3", tone(MAX_VOICE_S + 20, 8000), 8000, format="MP3")
    frames = (MAX_VOICE_BYTES - 44) // 2 + 1  # a valid 16-bit WAV one frame over the limit
    sf.write(folder / "big.wav", tone(frames / 16000, 16000), 16000, subtype="PCM_16")
    assert (folder / "big.wav").stat().st_size == MAX_VOICE_BYTES + 2
    assert all(p.stat().st_size <= MAX_VOICE_BYTES for p in folder.iterdir() if p.name != "big.wav")


def write_body(inbox: Path, name: str, body: Any) -> None:
    path = inbox / f"{name}.json"
    path.write_bytes(body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode())


def absolutize(body: Any, root: Path) -> Any:
    """Put the batch root into the cases that name an absolute path, so that a wrong write would land there."""
    if isinstance(body, dict):
        return {k: v.replace("/ABSOLUTE/", f"{root}/") if isinstance(v, str) else v for k, v in body.items()}
    return body


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
        data: dict[str, Any] = json.loads((self.outbox / job_id / "result.json").read_text())
        return data


def job_id(name: str) -> str:
    return safe_id(name)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Batch:
    root = tmp_path_factory.mktemp("hostile")
    inbox = root / "inbox"
    make_voices(inbox / "voices")
    (root / "outside.wav").write_bytes(NARRATOR)
    for name, (body, _, _) in BAD.items():
        write_body(inbox, name, absolutize(body, root))
    for name, body in GOOD.items():
        write_body(inbox, name, body)
    for name, body in RAW_GOOD.items():
        write_body(inbox, name, body)
    root_before = {p.name for p in root.iterdir()}
    neighbours_before = {p.name for p in root.parent.iterdir()}
    voices_before = tree(inbox / "voices")
    args = ["run", "--inbox", str(inbox), "--outbox", str(root / "outbox"), "--volume", str(tiny_volume.root),
            "--model", "tiny", "--processing-dir", str(root / "processing"), "--once"]
    out = run_cli(*args, env={"F5B_VOICE_MAX_BYTES": str(MAX_VOICE_BYTES)}, timeout=280)
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
    from processor.storage.local import LocalInbox, LocalOutbox
    from processor.storage.workdir import WorkDir
    from processor.worker import Worker

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with open(os.path.join(os.fsencode(inbox), b"bad-\xff-name.json"), "wb") as f:
        f.write(json.dumps(m()).encode())
    settings = Settings(inbox=str(inbox), outbox=str(tmp_path / "outbox"), processing_dir=tmp_path / "work")
    worker = Worker(inbox=LocalInbox(inbox, stale_after_s=settings.claim_stale_s, settle_s=0),
                    outbox=LocalOutbox(tmp_path / "outbox"),
                    voices=LocalVoices(inbox, max_bytes=settings.voice_max_bytes), synthesizer=NoSynthesizer(),
                    workdir=WorkDir(tmp_path / "work"), settings=settings)
    assert worker.run(once=True) == 1
    [result] = (tmp_path / "outbox").rglob("result.json")
    data = json.loads(result.read_text())
    assert data["status"] == "failed" and data["error"]["code"] == "invalid_manifest"
    assert data["manifest"].encode("utf-8")


def test_nothing_lands_next_to_the_worker_s_working_directory(batch: Batch) -> None:
    assert batch.returncode == 0
    for name in ("escape", "escape.json", ABSOLUTE_ID_TARGET, "a", "outside.wav"):  # the CLI runs in REPO
        assert not (REPO / name).exists() and not (REPO.parent / name).exists()
