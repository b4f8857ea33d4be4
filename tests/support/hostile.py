"""The hostile-input corpus as data: bad manifests and bad voices, each with the code it must fail with, and the
good manifests that share their batch.

`tests/test_hostile_input.py` runs it through the worker CLI and checks each case one by one; the reliability
report (`scenarios.hostile`) runs the same batch and counts what came out. What each case pins down is told in
the test module's docstring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from processor.audio import MAX_VOICE_S
from processor.manifest import MAX_MANIFEST_BYTES, MAX_TEXT_CHARS, safe_id

from tests.support.manifests import manifest
from tests.support.paths import VOICE, VOICE_TEXT

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
TOWN = {"voice": "voices/narrator.wav", "voice_text": VOICE_TEXT}  # a second voice in the voices table
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
    # delivery fields that do not go together (issue 15)
    "bitrate-with-flac": (m(format="flac", bitrate=128), "invalid_manifest", "bitrate: flac is lossless"),
    "opus-at-44100": (m(format="opus", sample_rate=44100), "invalid_manifest", "sample_rate: opus is written at"),
    "loudness-too-loud": (m(loudness=0), "invalid_manifest", "loudness: must be a number of LUFS"),
    "ceiling-without-target": (m(true_peak_db=-2.0, subtitles=["vtt", "vtt"]), "invalid_manifest",
                               "; subtitles: each subtitle format at most once"),
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
    "unknown-voice-language": (m(voice_language="klingon"), "invalid_manifest", "not a language Whisper knows"),
    "voice-language-is-number": (m(voice_language=7), "invalid_manifest", "voice_language:"),
    # the listening check's fields
    "negative-max-wer": (m(max_wer=-0.1), "invalid_manifest", "max_wer: Input should be greater than or equal to 0"),
    "max-wer-is-string": (m(max_wer="0.2"), "invalid_manifest", "max_wer:"),
    "max-wer-overflows-to-infinity": (raw(f'{{"text": "hi", "voice": "voices/narrator.wav", "voice_text": {VT}, '
                                          f'"max_wer": 1e999}}'),
                                      "invalid_manifest", "max_wer: Input should be a finite number"),
    "check-is-string": (m(check="yes"), "invalid_manifest", "check:"),
    "unknown-on-check-fail": (m(on_check_fail="retry"), "invalid_manifest", "on_check_fail:"),
    "check-without-asr": (m(check=True), "check_unavailable", "f5-batch seed"),
    "bidi-in-sidecar-transcript": (voice("voices/bidi-sidecar.wav", voice_text=None), "voice_unreadable", "U+202E"),
    "binary-sidecar-transcript": (voice("voices/binary-sidecar.wav", voice_text=None), "voice_unreadable",
                                  "not UTF-8"),
    "long-voice-with-its-whole-transcript": (voice("voices/three-times.wav", voice_text=" ".join([VOICE_TEXT] * 3)),
                                             "voice_clipped", "the model keeps"),
    "nul-in-voice-path": (voice("voices/narrator.wav\u0000.txt"), "invalid_manifest", "voice: contains"),
    # voice tags, breaks and the voices table
    "unknown-voice-tag": (m(text="Hi [twon] there.", voices={"town": TOWN}), "invalid_manifest",
                          "text: unknown voice tag [twon] at position 3 (counting characters from 0); the voices are "
                          "main, town"),
    "malformed-break": (m(text='Hi <break time="2 s"/> there.'), "invalid_manifest", "text: malformed break"),
    "break-over-ten-seconds": (m(text='Hi <break time="10001ms"/> there.'), "invalid_manifest", "longer than 10 s"),
    "voices-key-main": (m(voices={"main": TOWN}), "invalid_manifest", "voices.main: 'main' is the manifest's own"),
    "bad-voice-name": (m(voices={"the-town": TOWN}), "invalid_manifest", "voices.the-town: a voice's name is"),
    "unknown-field-in-a-voice": (m(voices={"town": {**TOWN, "sped": 0.8}}), "invalid_manifest",
                                 "voices.town.sped: unknown field"),
    "too-many-voices": (m(voices={f"v{i}": TOWN for i in range(17)}), "invalid_manifest",
                        "voices: Dictionary should have at most 16 items"),
    "voices-entry-leaves-the-inbox": (m(text="Hi [town] there.", voices={"town": {"voice": "../outside.wav"}}),
                                      "voice_not_allowed", "no '..'"),
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
    "over-five-minutes-mp3": (voice("voices/long.mp3"), "voice_too_long", "longer than 300 s"),
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
    for name, sidecar in (("bidi-sidecar", f"Pay \u202eevil\u202c now. {VOICE_TEXT}".encode()),
                          ("binary-sidecar", b"\xff\xfe\x00\x01")):
        (folder / f"{name}.wav").write_bytes(NARRATOR)
        (folder / f"{name}.txt").write_bytes(sidecar)
    # 24 s of "speech" (a tone) in three parts parted by silences: F5-TTS's preparation keeps the first part only.
    sf.write(folder / "three-times.wav", np.concatenate([tone(6.5, 8000), np.zeros(12000, np.float32)] * 3), 8000,
             subtype="PCM_16")
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


def job_id(name: str) -> str:
    """The job id (and outbox folder) of a case: its name, made safe as the worker does for a file name."""
    return safe_id(name)


#: the environment the batch runs with: big.wav is just over its voice size limit
WORKER_ENV = {"F5B_VOICE_MAX_BYTES": str(MAX_VOICE_BYTES)}


def write_batch(root: Path) -> Path:
    """Every case under `root/inbox` (voices included), and `root/outside.wav` for the cases that try to reach it.

    Returns the inbox; the cases that name an absolute path point into `root`, so that a wrong write lands there.
    """
    inbox = root / "inbox"
    make_voices(inbox / "voices")
    (root / "outside.wav").write_bytes(NARRATOR)
    for name, (body, _, _) in BAD.items():
        write_body(inbox, name, absolutize(body, root))
    for name, body in GOOD.items():
        write_body(inbox, name, body)
    for name, body in RAW_GOOD.items():
        write_body(inbox, name, body)
    return inbox


def expected() -> dict[str, str]:
    """Job id -> what its result must say: the bad case's error code, or "succeeded" for a good manifest."""
    return {job_id(n): code for n, (_, code, _) in BAD.items()} | {job_id(n): "succeeded" for n in [*GOOD, *RAW_GOOD]}
