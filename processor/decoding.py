"""Decoding a voice clip as pydub does, but bounded: the decoder stops as soon as the audio passes a limit.

pydub's `AudioSegment.from_file` (0.25.1) reads a `.wav` file itself and hands anything else to ffmpeg, then
holds ffmpeg's whole output in memory, several copies at once, before anyone can look at its length: a FLAC file
of 240 KB whose header claims 10 s but holds ten minutes of 8 channels at 96 kHz decodes to gigabytes. Here the
same ffmpeg command (the same output sample format, chosen from ffprobe's answer as pydub chooses it) streams
into a file in the job's processing folder while its frames are counted. Past MAX_VOICE_S of audio, or past
MAX_DECODED_BYTES of samples, ffmpeg is stopped and the clip refused, whatever its header claims. A clip within
both limits becomes the AudioSegment pydub would have made from it, sample for sample.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from processor.errors import ProcessingDiskFull, VoiceTooLarge, VoiceTooLong, VoiceUnreadable
from processor.storage.workdir import disk_full

MAX_VOICE_S = 300  # F5-TTS uses ~12 s of it; a longer clip is a mistake, and an hour of PCM is a lot of memory
# Five minutes of stereo at 48 kHz in 32-bit samples (what pydub decodes OGG, Opus and 24-bit FLAC to): every
# clip within the time limit and at most stereo 48 kHz fits, whatever its sample format: 115.2 MB.
MAX_DECODED_BYTES = MAX_VOICE_S * 48_000 * 2 * 4

_CHUNK = 1 << 20
_MAX_WAV_CHUNKS = 10  # pydub's reader looks no further for the data chunk
_MAX_HEADER_CHUNK = 1 << 16  # ffmpeg's own header chunks (fmt, LIST) are a few dozen bytes
_UNSIGNED_TO_SIGNED = bytes((b + 128) % 256 for b in range(256))  # pydub's audioop.bias(data, 1, -128)
_FLOAT_AS_16_BIT = ("mp3", "mp4", "aac", "webm", "ogg")  # codecs pydub decodes to 16-bit although ffprobe says fltp


@dataclass(frozen=True)
class PcmFormat:
    """The sample format of ffmpeg's WAV output, from its fmt chunk."""

    channels: int
    rate: int
    bits: int

    @property
    def frame_width(self) -> int:
        return self.channels * (self.bits // 8)

    def seconds(self, size: int) -> float:
        return size // self.frame_width / self.rate


@dataclass(frozen=True)
class Probe:
    """What ffprobe says of a clip before decoding: pydub's choice of output codec, and the length the
    container claims (None when it does not say)."""

    codec: str | None
    claimed_s: float | None


def decode(path: Path, workdir: Path) -> Any:
    """`AudioSegment.from_file(path)`, refusing a clip whose audio passes MAX_VOICE_S or MAX_DECODED_BYTES
    (VoiceTooLong, VoiceTooLarge) before it is all in memory; VoiceUnreadable for what ffmpeg cannot decode."""
    if path.suffix.lower() == ".wav":  # pydub's own test: the name, not the content
        aseg = _read_wav(path)
        if aseg is not None:
            return aseg
    return _decode_with_ffmpeg(path, workdir)


def _read_wav(path: Path) -> Any:
    """pydub's own WAV reader, which holds the file's bytes: the file's size bounds its samples. None when
    the reader refuses the file, which pydub then hands to ffmpeg (float or RF64 WAV, FLAC named .wav...)."""
    from pydub import AudioSegment

    size = path.stat().st_size
    if size > MAX_DECODED_BYTES:
        raise VoiceTooLarge(too_large(f"a WAV file of {size} bytes"))
    try:
        return AudioSegment(data=path.read_bytes())
    except Exception:  # pydub catches everything here too, and tries ffmpeg
        return None


def _decode_with_ffmpeg(path: Path, workdir: Path) -> Any:
    from pydub import AudioSegment

    probe = probe_clip(path)
    command = [AudioSegment.converter, "-y", "-i", str(path), *(["-acodec", probe.codec] if probe.codec else []),
               "-vn", "-f", "wav", "-"]
    pcm, log = workdir / "voice.decoded.pcm", workdir / "voice.ffmpeg.log"
    try:
        fmt = _run(command, pcm, log, probe)
        return segment(pcm, fmt)
    finally:
        pcm.unlink(missing_ok=True)
        log.unlink(missing_ok=True)


def _run(command: list[str], pcm: Path, log: Path, probe: Probe) -> PcmFormat:
    """ffmpeg's samples into `pcm`, its messages into `log`; their format."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        try:
            assert proc.stdout is not None
            fmt = stream_pcm(proc.stdout, pcm, probe)
            returncode = proc.wait()
        finally:
            _stop(proc)
    if returncode != 0 or fmt is None:
        raise VoiceUnreadable(f"voice clip could not be decoded as audio ({ffmpeg_says(log, returncode)}); "
                              "use WAV, FLAC, MP3 or OGG")
    return fmt


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill ffmpeg if it is still decoding (a limit was passed), and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def probe_clip(path: Path) -> Probe:
    """ffprobe's answer, read as `AudioSegment.from_file` reads it to pick ffmpeg's output codec."""
    from pydub.utils import mediainfo_json

    try:
        info = mediainfo_json(str(path))
    except Exception as exc:  # an answer pydub cannot parse: from_file would have failed the same way
        raise VoiceUnreadable(f"voice clip could not be decoded as audio ({decoder_says(exc)}); "
                              "use WAV, FLAC, MP3 or OGG") from exc
    if not info:  # ffprobe knows nothing of it: ffmpeg decides (and will most likely fail)
        return Probe(None, None)
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise VoiceUnreadable("voice clip could not be decoded as audio (it holds no audio stream); "
                              "use WAV, FLAC, MP3 or OGG")
    stream = audio[0]
    if stream.get("sample_fmt") == "fltp" and stream.get("codec_name") in _FLOAT_AS_16_BIT:
        bits = 16
    else:
        bits = int(stream.get("bits_per_sample") or 0)
    return Probe("pcm_u8" if bits == 8 else f"pcm_s{bits}le", _seconds(info.get("format", {}).get("duration")))


def _seconds(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def stream_pcm(out: IO[bytes], pcm: Path, probe: Probe) -> PcmFormat | None:
    """Copy the samples of ffmpeg's WAV stream `out` into `pcm`, refusing the clip as soon as they pass a limit.
    None when `out` ends before its header does (ffmpeg failed)."""
    fmt = read_wav_header(out)
    if fmt is None:
        return None
    try:
        with pcm.open("wb") as f:
            while chunk := out.read(_CHUNK):
                f.write(chunk)
                check_limits(fmt, f.tell(), probe)
    except OSError as exc:
        if disk_full(exc):  # the processing folder's trouble, not the clip's
            raise ProcessingDiskFull(f"processing folder filled up while decoding the voice clip: {exc.strerror}"
                                     ) from exc
        raise
    return fmt


def check_limits(fmt: PcmFormat, size: int, probe: Probe) -> None:
    """Refuse `size` bytes of samples in `fmt` past MAX_VOICE_S of whole frames, or past MAX_DECODED_BYTES."""
    if size // fmt.frame_width > MAX_VOICE_S * fmt.rate:
        says = f"; its header says {probe.claimed_s:.1f} s" if probe.claimed_s is not None else ""
        raise VoiceTooLong(f"voice clip is longer than {MAX_VOICE_S} s (decoding stopped there{says}); "
                           f"the limit is {MAX_VOICE_S} s (about 10 s is best)")
    if size > MAX_DECODED_BYTES:
        raise VoiceTooLarge(too_large(f"{fmt.channels} channels at {fmt.rate} Hz, {fmt.bits}-bit, "
                                      f"{fmt.seconds(size):.1f} s decoded"))


def too_large(what: str) -> str:
    return (f"voice clip decodes to more than {MAX_DECODED_BYTES / 1e6:.0f} MB of samples ({what}); the limit "
            f"holds {MAX_VOICE_S} s of stereo at 48 kHz: mix it down to stereo at 48 kHz or less, or trim it "
            "(about 10 s is best)")


def read_wav_header(out: IO[bytes]) -> PcmFormat | None:
    """Read `out` up to the start of its data chunk, as pydub's reader walks a WAV; its sample format."""
    head = out.read(12)
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:] != b"WAVE":
        raise VoiceUnreadable("voice clip could not be decoded as audio (ffmpeg's output is not WAV)")
    fmt: PcmFormat | None = None
    for _ in range(_MAX_WAV_CHUNKS):
        chunk = out.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            return _usable(fmt)
        if size > _MAX_HEADER_CHUNK:
            break
        body = out.read(size)
        if chunk_id == b"fmt " and len(body) >= 16:
            fmt = _pcm_format(body)
    raise VoiceUnreadable("voice clip could not be decoded as audio (ffmpeg's output has no data chunk)")


def _pcm_format(body: bytes) -> PcmFormat:
    audio_format, channels, rate = struct.unpack_from("<HHI", body)
    bits = struct.unpack_from("<H", body, 14)[0]
    if audio_format not in (1, 0xFFFE):  # pydub reads integer PCM only
        raise VoiceUnreadable(f"voice clip could not be decoded as audio (WAV format 0x{audio_format:X})")
    return PcmFormat(channels, rate, bits)


def _usable(fmt: PcmFormat | None) -> PcmFormat:
    if fmt is None or fmt.rate <= 0 or fmt.channels <= 0 or fmt.bits not in (8, 16, 24, 32):
        described = f"{fmt.channels} channels, {fmt.rate} Hz, {fmt.bits}-bit" if fmt else "no fmt chunk"
        raise VoiceUnreadable(f"voice clip has an unusable format ({described}); use 16-bit PCM WAV, FLAC or MP3")
    return fmt


def segment(pcm: Path, fmt: PcmFormat) -> Any:
    """The AudioSegment pydub makes of the same samples: whole frames only, 8-bit made signed (24-bit is
    widened to 32 by the constructor itself)."""
    from pydub import AudioSegment

    raw = pcm.read_bytes()
    partial = len(raw) % fmt.frame_width
    if partial:  # a file cut inside its last frame: keep the whole frames
        raw = raw[: len(raw) - partial]
    if fmt.bits == 8:
        raw = raw.translate(_UNSIGNED_TO_SIGNED)
    return AudioSegment(data=raw, sample_width=fmt.bits // 8, frame_rate=fmt.rate, channels=fmt.channels)


def ffmpeg_says(log: Path, returncode: int) -> str:
    """ffmpeg's last line rather than its banner."""
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - 4096))
        lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    return f"ffmpeg exited with {returncode}: {lines[-1][:300]}" if lines else f"ffmpeg exited with {returncode}"


def decoder_says(exc: Exception) -> str:
    """The gist of a decoder failure: its last line rather than a banner."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1][:300]}" if lines else type(exc).__name__
