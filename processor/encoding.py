"""Audio out: the outbox's formats, the encoder each goes through, and the settings each takes.

wav, flac, mp3 and ogg without a bitrate are libsndfile's (soundfile), byte for byte what the worker always
wrote. opus and m4a, and mp3 or ogg with a bitrate, go through ffmpeg: libsndfile writes neither Opus nor AAC,
and sets no kbit/s. A `sample_rate` is reached with soxr before either encoder sees the samples, so the
encoder never resamples on its own. Which rates and bitrates each encoder takes is here too, for the manifest
to refuse what a job could only fail on (`sample_rate_problem`, `bitrate_problem`).
"""

from __future__ import annotations

import functools
import io
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from processor.errors import F5BatchError
from processor.results import Encoding

FFMPEG = "ffmpeg"
FFMPEG_TIMEOUT_S = 600.0  # an hour of speech encodes in seconds; a hung ffmpeg must not hold the output thread
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000

# soundfile format and subtype, and the codec's name as ffprobe says it, per format. WAV/FLAC are 16-bit, as
# F5-TTS writes.
SOUNDFILE: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "pcm_s16le"),
    "flac": ("FLAC", "PCM_16", "flac"),
    "ogg": ("OGG", "VORBIS", "vorbis"),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
}
# The MPEG audio sample rates (MP3's and AAC's, within 8000-48000); libopus's own: Opus has no other.
MPEG_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
OPUS_DECODED_RATE = 48000  # every Ogg Opus decoder outputs 48 kHz, whatever was encoded (RFC 7845 §5.1)


@dataclass(frozen=True)
class Codec:
    """A lossy format through ffmpeg: its encoder, muxer, rates, and bitrates in kbit/s (mono, as the model
    speaks)."""

    encoder: str
    codec: str  # as ffprobe names it
    muxer: str
    rates: frozenset[int] | None  # None: any rate from 8000 to 48000
    default_kbps: int | None  # None: only through ffmpeg with a bitrate (else soundfile's default quality)
    options: tuple[str, ...] = ()

    def kbps_range(self, rate: int) -> tuple[int, int]:
        """The bitrates the encoder takes at `rate`, measured with ffmpeg 5-7's encoders on mono speech."""
        if self.encoder == "aac":  # AAC-LC carries at most 6144 bits per 1024-sample frame and channel
            return 16, min(320, 6 * rate // 1000)
        if self.encoder == "libmp3lame":  # MPEG-2.5, MPEG-2 and MPEG-1 layer III bitrate tables
            return (8, 64) if rate < 16000 else (8, 160) if rate < 32000 else (32, 320)
        if self.encoder == "libvorbis":  # libvorbis' mono modes: outside them its setup fails
            return (8, 32) if rate < 16000 else (16, 80) if rate < 32000 else (32, 160) if rate < 44100 else (32, 240)
        return 6, 256  # libopus, per channel


FFMPEG_CODECS: dict[str, Codec] = {
    # Constrained VBR keeps Opus's average within a few percent of the request; unconstrained VBR spends up to
    # half as much again on speech.
    "opus": Codec("libopus", "opus", "ogg", OPUS_RATES, 64, ("-vbr", "constrained")),
    # faststart: the index before the audio, so that players and podcast hosts can start before the end.
    "m4a": Codec("aac", "aac", "ipod", MPEG_RATES, 96, ("-movflags", "+faststart")),
    "mp3": Codec("libmp3lame", "mp3", "mp3", MPEG_RATES, None),
    "ogg": Codec("libvorbis", "vorbis", "ogg", None, None),
}
# Encoders `doctor` (encoders.ffmpeg) requires of ffmpeg: every format above must encode on this machine.
REQUIRED_ENCODERS = tuple(codec.encoder for codec in FFMPEG_CODECS.values())


def through_ffmpeg(fmt: str, bitrate_kbps: int | None) -> bool:
    return fmt not in SOUNDFILE or bitrate_kbps is not None


def sample_rate_problem(fmt: str, rate: int) -> str | None:
    """Why `fmt` cannot be written at `rate`; None when it can."""
    codec = FFMPEG_CODECS.get(fmt)
    if codec is None or codec.rates is None or rate in codec.rates:
        return None
    said = ", ".join(str(r) for r in sorted(codec.rates))
    return f"{fmt} is written at {said} Hz only, not {rate}"


def bitrate_problem(fmt: str, kbps: int, rate: int) -> str | None:
    """Why `fmt` cannot be written at `kbps` kbit/s and `rate` Hz; None when it can."""
    codec = FFMPEG_CODECS.get(fmt)
    if codec is None:
        return f"{fmt} is lossless: it takes no bitrate (use mp3, ogg, opus or m4a)"
    low, high = codec.kbps_range(rate)
    if low <= kbps <= high:
        return None
    return f"{fmt} at {rate} Hz takes {low} to {high} kbit/s, not {kbps}"


def default_kbps(fmt: str, rate: int) -> int | None:
    """What a lossy format through ffmpeg is written at without a bitrate (within what the rate allows)."""
    codec = FFMPEG_CODECS.get(fmt)
    if codec is None or codec.default_kbps is None:
        return None
    return min(codec.default_kbps, codec.kbps_range(rate)[1])


def resample(wave: np.ndarray, rate: int, to: int) -> np.ndarray:
    """soxr's high-quality resampler (the one torchaudio and librosa offer as soxr_hq)."""
    if rate == to:
        return wave
    import soxr

    return np.asarray(soxr.resample(wave, rate, to, quality="HQ"), dtype=np.float32)


def encode(wave: np.ndarray, sample_rate: int, fmt: str, bitrate_kbps: int | None = None,
           output_rate: int | None = None) -> tuple[bytes, Encoding]:
    """The file's bytes and how they were made. Without a bitrate and a new rate, wav/flac/mp3/ogg are exactly
    the worker's earlier files."""
    rate = output_rate or sample_rate
    wave = resample(wave, sample_rate, rate)
    if not through_ffmpeg(fmt, bitrate_kbps):
        container, subtype, codec_name = SOUNDFILE[fmt]
        buffer = io.BytesIO()
        sf.write(buffer, wave, rate, format=container, subtype=subtype)
        return buffer.getvalue(), Encoding(format=fmt, encoder=f"libsndfile {sf.__libsndfile_version__}",
                                           codec=codec_name, bitrate_kbps=None, sample_rate=rate)
    codec = FFMPEG_CODECS[fmt]
    kbps = bitrate_kbps or default_kbps(fmt, rate)
    assert kbps is not None, "a format without a default bitrate goes through ffmpeg only with one"
    data = run_ffmpeg(wave, rate, codec, kbps)
    return data, Encoding(format=fmt, encoder=f"ffmpeg {ffmpeg_version()} {codec.encoder}", codec=codec.codec,
                          bitrate_kbps=kbps, sample_rate=rate)


def decoded_rate(fmt: str, rate: int) -> int:
    """The rate a player gets from the file: Opus's is always 48 kHz."""
    return OPUS_DECODED_RATE if fmt == "opus" else rate


def run_ffmpeg(wave: np.ndarray, rate: int, codec: Codec, kbps: int) -> bytes:
    """32-bit float samples in on stdin, the file out through a temporary file (MP4 needs a seekable output)."""
    source = io.BytesIO()
    sf.write(source, wave, rate, format="WAV", subtype="FLOAT")
    with tempfile.TemporaryDirectory(prefix="f5b-encode-") as folder:
        out = Path(folder) / f"audio.{codec.muxer}"
        # bitexact and no metadata: the same samples make the same bytes (no encoder tag, no random Ogg serial).
        command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-map_metadata", "-1",
                   "-fflags", "+bitexact", "-flags:a", "+bitexact", "-c:a", codec.encoder, "-b:a", f"{kbps}k",
                   *codec.options, "-f", codec.muxer, "-y", str(out)]
        try:
            done = subprocess.run(command, input=source.getvalue(), capture_output=True, timeout=FFMPEG_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise F5BatchError(f"ffmpeg could not encode the audio ({exc}); run f5-batch doctor") from exc
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise F5BatchError(f"ffmpeg could not encode the audio as {codec.encoder} at {kbps} kbit/s, {rate} Hz: "
                               f"{said[0]}; run f5-batch doctor")
        return out.read_bytes()


@functools.cache
def ffmpeg_version() -> str:
    """ffmpeg's version, as `ffmpeg -version` says it first (e.g. 5.1.6-0+deb12u1)."""
    try:
        done = subprocess.run([FFMPEG, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = done.stdout.split()
    return words[2] if len(words) > 2 and words[:2] == ["ffmpeg", "version"] else "unknown"
