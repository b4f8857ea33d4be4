"""Audio people can publish: loudness targets (`processor.loudness`), delivery formats (`processor.encoding`),
the manifest rules that go with them, F5B_LOUDNESS, and the `audio.encoders` check. On the example voice."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.checks import Context
from processor.checks.encoders import ffmpeg_encoders
from processor.encoding import encode
from processor.errors import InvalidConfiguration
from processor.flags import settings_from
from processor.loudness import integrated_lufs, normalize, target_for, true_peak_dbtp
from processor.manifest import check_manifest
from processor.settings import Settings

from tests.support.manifests import manifest
from tests.support.paths import VOICE

RATE = 24000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The example voice at the model's rate, three times over (21 s): long enough for encoders' averages."""
    from processor.encoding import resample

    wave, rate = sf.read(str(VOICE), dtype="float32")
    return np.tile(resample(wave, rate, RATE), 3)


@pytest.mark.parametrize("gain", [0.03, 0.3, 1.0])
def test_one_gain_brings_any_level_to_the_target_under_the_ceiling(speech: np.ndarray, gain: float) -> None:
    out, report = normalize(speech * np.float32(gain), RATE, -23.0, -1.0)
    assert abs(integrated_lufs(out, RATE) - -23.0) <= 0.5
    assert report.after_lufs is not None and abs(report.after_lufs - -23.0) <= 0.5
    assert true_peak_dbtp(out, RATE) <= -1.0 and np.max(np.abs(out)) < 1.0
    assert not report.limited_by_ceiling
    ratio = out[np.abs(speech) > 1e-3] / (speech[np.abs(speech) > 1e-3] * gain)  # one gain: the shape is kept
    assert np.ptp(ratio) < 1e-3 * np.max(ratio)


def test_the_ceiling_lowers_the_gain_instead_of_clipping(speech: np.ndarray) -> None:
    """The example voice peaks 20 dB over its loudness: -16 LUFS would put its true peak at +3.75 dBTP."""
    out, report = normalize(speech, RATE, -16.0, -1.0)
    assert report.limited_by_ceiling and report.after_lufs is not None and report.after_lufs < -16.5
    assert report.after_true_peak_db is not None and report.after_true_peak_db <= -1.0
    assert true_peak_dbtp(out, RATE) <= -1.0 and np.max(np.abs(out)) < 1.0
    loud, loud_report = normalize(speech * 8, RATE, -16.0, -3.0)  # float samples far over full scale
    assert loud_report.limited_by_ceiling and loud_report.gain_db < 0 and true_peak_dbtp(loud, RATE) <= -3.0


def test_silence_and_audio_under_one_block_are_left_as_they_are(speech: np.ndarray) -> None:
    silent, report = normalize(np.zeros(RATE, dtype=np.float32), RATE, -16.0, -1.0)
    assert report.skipped == "silent" and not silent.any() and report.before_lufs is None
    short = speech[RATE * 2: RATE * 2 + RATE // 4]
    same, report = normalize(short, RATE, -16.0, -1.0)
    assert report.skipped == "too_short" and same is short and report.gain_db == 0.0
    json.loads(report.model_dump_json())  # no -inf in result.json


def test_presets_and_the_fleet_default() -> None:
    assert target_for("podcast", None) == target_for(-16, None)
    assert (target_for("acx", None).lufs, target_for("acx", None).ceiling_dbtp) == (-19.0, -3.0)  # type: ignore
    assert target_for("ebu-r128", -2.0).ceiling_dbtp == -2.0  # type: ignore[union-attr]
    assert target_for(None, None) is None and target_for(None, None, "acx") == target_for("acx", None)
    assert target_for(-20, None, "acx").lufs == -20.0  # type: ignore[union-attr]  # the manifest's wins


def test_f5b_loudness_takes_a_number_or_a_preset_and_names_itself_when_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    assert Settings(loudness="-18").loudness == -18.0  # type: ignore[arg-type]  # as a variable gives it
    assert Settings(loudness="acx").loudness == "acx"  # type: ignore[arg-type]
    for bad in ("-3", "loud"):
        monkeypatch.setenv("F5B_LOUDNESS", bad)
        with pytest.raises(InvalidConfiguration, match="F5B_LOUDNESS.*ebu-r128, podcast or acx"):
            settings_from(argparse.Namespace(), {"F5B_LOUDNESS": bad})


def problems(**fields: Any) -> dict[str, str]:
    checked = check_manifest(json.dumps(manifest(**fields)).encode(), "job-1")
    return {p.field: p.message for p in checked.problems}


@pytest.mark.parametrize(("fields", "field", "fragment"), [
    ({"format": "flac", "bitrate": 128}, "bitrate", "lossless"),
    ({"format": "m4a", "bitrate": 96, "sample_rate": 8000}, "bitrate", "16 to 48"),
    ({"format": "ogg", "bitrate": 200}, "bitrate", "16 to 80"),
    ({"format": "opus", "sample_rate": 44100}, "sample_rate", "48000 Hz only"),
    ({"format": "mp3", "sample_rate": 10000}, "sample_rate", "not 10000"),
    ({"loudness": -3}, "loudness", "from -40.0 to -5.0"),
    ({"loudness": "loud"}, "loudness", "ebu-r128"),
    ({"true_peak_db": -2.0}, "true_peak_db", "loudness"),
    ({"subtitles": ["srt", "srt"]}, "subtitles", "once"),
])
def test_delivery_fields_are_refused_on_their_own_field(fields: dict[str, Any], field: str, fragment: str) -> None:
    found = problems(**fields)
    assert list(found) == [field] and fragment in found[field]


def test_delivery_fields_that_fit_together_pass() -> None:
    assert problems(format="m4a", bitrate=96, sample_rate=24000, loudness="acx", true_peak_db=-2.5,
                    subtitles=["srt", "vtt"]) == {}
    assert problems(format="opus", sample_rate=48000, loudness=-16) == {}


def old_encode(wave: np.ndarray, rate: int, fmt: str) -> bytes:
    """`processor.audio.encode` before opus and m4a: what a job without the new fields must still write."""
    container, subtype = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
                          "mp3": ("MP3", "MPEG_LAYER_III")}[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=container, subtype=subtype)
    return buffer.getvalue()


def without_ogg_serials(data: bytes) -> bytes:
    """libsndfile gives each Ogg stream a random serial number (and so each page another checksum)."""
    pages = bytearray(data)
    start = 0
    while (start := data.find(b"OggS", start)) >= 0:
        pages[start + 14: start + 18] = pages[start + 22: start + 26] = b"\0\0\0\0"
        start += 4
    return bytes(pages)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_formats_without_the_new_fields_are_written_as_before(speech: np.ndarray, fmt: str) -> None:
    data, encoding = encode(speech[: RATE * 3], RATE, fmt)
    assert without_ogg_serials(data) == without_ogg_serials(old_encode(speech[: RATE * 3], RATE, fmt))
    assert encoding.encoder.startswith("libsndfile") and encoding.bitrate_kbps is None


def probe(data: bytes, tmp: Path, name: str) -> dict[str, Any]:
    path = tmp / name
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate:format=duration",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    stream = info["streams"][0]
    duration = float(info["format"]["duration"])
    return {"codec": stream["codec_name"], "rate": int(stream["sample_rate"]),
            "kbps": len(data) * 8 / duration / 1000, "duration": duration}


@pytest.mark.parametrize(("fmt", "kbps", "rate", "codec"), [
    ("opus", 64, 48000, "opus"), ("m4a", 96, 24000, "aac"), ("mp3", 64, 22050, "mp3"),
])
def test_lossy_formats_decode_at_the_rate_and_bitrate_asked(speech: np.ndarray, tmp_path: Path, fmt: str,
                                                            kbps: int, rate: int, codec: str) -> None:
    data, encoding = encode(speech, RATE, fmt, kbps, rate)
    found = probe(data, tmp_path, f"audio.{fmt}")
    assert (found["codec"], found["rate"]) == (codec, rate)
    assert abs(found["kbps"] - kbps) <= 0.15 * kbps, found
    assert abs(found["duration"] - len(speech) / RATE) < 0.1
    assert encoding.model_dump() == {"format": fmt, "encoder": encoding.encoder, "codec": codec,
                                     "bitrate_kbps": kbps, "sample_rate": rate}
    assert encoding.encoder.startswith("ffmpeg ")
    assert encode(speech, RATE, fmt, kbps, rate)[0] == data  # bitexact: a rerun writes the same bytes


def test_opus_and_m4a_have_defaults(speech: np.ndarray) -> None:
    assert encode(speech[:RATE], RATE, "opus")[1].bitrate_kbps == 64
    assert encode(speech[:RATE], RATE, "m4a", output_rate=8000)[1].bitrate_kbps == 48  # AAC's most at 8 kHz


def test_encoders_check_passes_here_and_fails_without_them(tmp_path: Path) -> None:
    settings = Settings(inbox=str(tmp_path / "in"), outbox=str(tmp_path / "out"), volume=tmp_path / "volume")
    assert ffmpeg_encoders(Context(settings)).status == "pass"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ffmpeg").write_text("#!/bin/sh\necho ' A....D libmp3lame  MP3'\necho ' A....D pcm_s16le  PCM'\n")
    (fake / "ffmpeg").chmod(0o755)
    verdict = ffmpeg_encoders(Context(settings, environ={"PATH": str(fake)}))
    assert verdict.status == "fail" and "libopus, aac, libvorbis" in verdict.detail and "apt-get" in verdict.hint
    verdict = ffmpeg_encoders(Context(settings, environ={"PATH": str(tmp_path / "nowhere")}))
    assert verdict.status == "fail" and "not on PATH" in verdict.detail
