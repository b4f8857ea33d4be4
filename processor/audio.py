"""Audio in: reference-clip preparation and silence removal (encoding is `processor.encoding`).

The reference-clip steps reproduce F5-TTS 1.1.22's `preprocess_ref_audio_text`
and `remove_silence_for_generated_wav` (f5_tts/infer/utils_infer.py) step for
step, with the same pydub calls, so that the worker's audio equals F5-TTS's own
for the same inputs. Unlike upstream they write only inside the job's processing
folder, which is emptied after the job (upstream leaves a temp file per voice).

Before pydub decodes a clip, `load_voice` refuses what upstream would crash on or
silently misread (empty, truncated, NaN-filled, 64-bit float, over five minutes),
each with a stable code; see its docstring for the rules. The decoding itself
(`processor.decoding`) is pydub's, bounded: it stops as soon as the audio passes
the length limit, whatever the file's header claims.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from processor.decoding import MAX_VOICE_S as MAX_VOICE_S
from processor.decoding import decode, decoder_says
from processor.errors import F5BatchError, VoiceClipped, VoiceTooLong, VoiceUnreadable

CLIP_MS = 12_000
MIN_VOICE_S = 0.3

# Containers whose header gives the length (libsndfile reads it without decoding): one over the limit is refused
# without decoding. MP3's is an estimate; FLAC's and OGG's can lie, so decoding is bounded anyway.
EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "CAF", "FLAC", "OGG"})
_SCAN_FRAMES = 1 << 16

@dataclass(frozen=True)
class VoicePrompt:
    """A reference clip ready for the model: float32 samples (channels, frames) at its own rate."""

    samples: np.ndarray
    sample_rate: int
    text: str
    key: str = ""  # identity of the clip, its transcript and the preparation; "" when unknown (never cached)
    text_source: str = "manifest"  # where the transcript came from: manifest, sidecar or asr

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[-1]) / self.sample_rate


@dataclass(frozen=True)
class Reference:
    """The clip as the model will hear it, and how long it was when speech had to be cut to fit (None: nothing was)."""

    samples: np.ndarray  # (channels, frames)
    sample_rate: int
    clipped_from_s: float | None

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[-1]) / self.sample_rate

    def prompt(self, voice_text: str, key: str = "", source: str = "manifest") -> VoicePrompt:
        return VoicePrompt(self.samples, self.sample_rate, normalize_voice_text(voice_text), key, source)

    def clipped(self, voice: str) -> VoiceClipped:
        return VoiceClipped(
            f"voice {voice!r} is {self.clipped_from_s:.1f} s long; the model keeps {self.duration_s:.1f} s of it, and "
            f"the transcript, written for the whole clip, would not match: trim the clip to {CLIP_MS // 1000} s or "
            f"less with a transcript of what remains, or seed an ASR model (f5-batch seed --asr) so the worker "
            f"transcribes the part it keeps")


def prepare_reference(path: Path, workdir: Path) -> Reference:
    """Clip to ~12 s on silences, trim the edges, append 50 ms of silence, as F5-TTS does."""
    from pydub import AudioSegment, silence

    aseg = load_voice(path, workdir)
    clipped, cut = _clip_on_silence(aseg, silence, min_silence_len=1000, silence_thresh=-50)
    if len(clipped) > CLIP_MS:
        clipped, cut = _clip_on_silence(aseg, silence, min_silence_len=100, silence_thresh=-40)
    if len(clipped) > CLIP_MS:
        clipped, cut = clipped[:CLIP_MS], True
    trimmed = _trim_edges(clipped, silence) + AudioSegment.silent(duration=50)

    prepared = workdir / "voice.prepared.wav"
    trimmed.export(str(prepared), format="wav")
    samples, rate = sf.read(str(prepared), dtype="float32", always_2d=True)
    if samples.shape[0] < MIN_VOICE_S * rate or not np.isfinite(samples).all() or not np.any(samples):
        raise VoiceUnreadable("voice clip is silent or too short once its silences are trimmed")
    return Reference(np.ascontiguousarray(samples.T), int(rate), len(aseg) / 1000 if cut else None)


def prepare_voice(path: Path, voice_text: str, workdir: Path, key: str = "") -> VoicePrompt:
    """The clip with its transcript; a clip whose speech had to be cut fails (`voice_clipped`): its transcript
    describes audio the model will not hear."""
    reference = prepare_reference(path, workdir)
    if reference.clipped_from_s is not None:
        raise reference.clipped(path.name)
    return reference.prompt(voice_text, key)


def load_voice(path: Path, workdir: Path) -> Any:
    """Decode a voice clip as pydub does for F5-TTS, after cheap checks that need no decoding.

    Refused (VoiceUnreadable): an empty file; a WAV cut short of the length its header declares (an
    interrupted upload: the transcript would no longer match); NaN or infinite samples; 64-bit float
    samples (pydub cannot read them); anything neither pydub nor ffmpeg decodes; under MIN_VOICE_S.
    Refused (VoiceTooLong): over MAX_VOICE_S, from the header where it gives the length, else as soon
    as decoding passes it. Refused (VoiceTooLarge): samples past MAX_DECODED_BYTES once decoded (more
    channels or a higher rate than stereo 48 kHz for five minutes).
    A clip whose data ends in a partial frame keeps its whole frames; formats without a declared
    length (MP3, ...) decode what is there.
    """
    if path.stat().st_size == 0:
        raise VoiceUnreadable("voice clip is an empty file (0 bytes); upload the clip again")
    _check_wav_complete(path)
    path = _check_header(path, workdir)
    aseg = _decode(path, workdir)
    seconds = len(aseg) / 1000
    if seconds > MAX_VOICE_S:
        raise VoiceTooLong(f"voice clip is {seconds:.1f} s long; the limit is {MAX_VOICE_S} s (about 10 s is best)")
    if seconds < MIN_VOICE_S:
        raise VoiceUnreadable(f"voice clip is {seconds:.2f} s long; at least {MIN_VOICE_S} s is needed")
    return aseg


def _check_header(path: Path, workdir: Path) -> Path:
    """Length, sample type and finiteness from libsndfile, before decoding; the path to decode."""
    try:
        info = sf.info(str(path))
    except Exception:  # not a format libsndfile knows: ffmpeg may still decode it
        return path
    if info.format in EXACT_LENGTH_FORMATS and info.samplerate > 0 and info.frames / info.samplerate > MAX_VOICE_S:
        raise VoiceTooLong(
            f"voice clip is {info.frames / info.samplerate:.1f} s long; the limit is {MAX_VOICE_S} s "
            "(about 10 s is best)"
        )
    if info.subtype == "DOUBLE":
        raise VoiceUnreadable(
            "voice clip has 64-bit float samples, which the decoder cannot read; convert it to 16-bit PCM "
            "(e.g. `ffmpeg -i in.wav -c:a pcm_s16le out.wav`)"
        )
    if info.subtype == "FLOAT":
        return _checked_float(path, info, workdir)
    return path


def _checked_float(path: Path, info: Any, workdir: Path) -> Path:
    """Refuse NaN/Inf samples, which ffmpeg would turn into full-scale noise. pydub's own WAV reader takes
    WAVE_FORMAT_EXTENSIBLE float data for integers (noise again): such a file is rewritten as a plain
    float WAV, which pydub hands to ffmpeg like any other float WAV."""
    try:
        _check_finite(path)
        if info.format != "WAVEX":
            return path
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
        plain = workdir / "voice.float.wav"
        sf.write(str(plain), samples, rate, subtype="FLOAT", format="WAV")
        return plain
    except RuntimeError as exc:  # soundfile's LibsndfileError
        raise VoiceUnreadable(f"voice clip could not be read: {exc}") from exc


def _check_finite(path: Path) -> None:
    with sf.SoundFile(str(path)) as src:
        for index, block in enumerate(src.blocks(_SCAN_FRAMES, dtype="float32", always_2d=True)):
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                at = (index * _SCAN_FRAMES + int(np.argmin(finite))) / src.samplerate
                raise VoiceUnreadable(f"voice clip has NaN or infinite samples (the first at {at:.2f} s); "
                                      "export it again")


def _check_wav_complete(path: Path) -> None:
    """A RIFF/WAVE file whose data chunk declares more whole frames than the file holds is truncated."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return
        position, block_align, byte_rate = 12, 1, 0
        for _ in range(64):  # chunks before "data" are few; a bound keeps a hostile file from looping
            f.seek(position)
            chunk = f.read(24)
            if len(chunk) < 8:
                return
            chunk_id, size = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
            if chunk_id == b"fmt " and len(chunk) >= 22:
                byte_rate, block_align = struct.unpack_from("<IH", chunk, 16)
            if chunk_id == b"data":
                _check_data_size(path, size, position + 8, max(block_align, 1), byte_rate)
                return
            position += 8 + size + (size & 1)


def _check_data_size(path: Path, declared: int, offset: int, block_align: int, byte_rate: int) -> None:
    present = max(path.stat().st_size - offset, 0)
    if declared in (0, 0xFFFFFFFF) or declared - present < block_align:  # unknown length (streamed), or whole
        return
    if byte_rate > 0:
        lengths = f"{declared / byte_rate:.2f} s of audio, the file holds {present / byte_rate:.2f} s"
    else:
        lengths = f"{declared} bytes of audio, the file holds {present}"
    raise VoiceUnreadable(f"voice clip is truncated: its WAV header declares {lengths}; upload the complete file")


def _decode(path: Path, workdir: Path) -> Any:
    try:
        aseg = decode(path, workdir)
    except F5BatchError:  # refused with its own code
        raise
    except Exception as exc:  # pydub raises CouldntDecodeError, IndexError, KeyError, OSError... for bad files
        raise VoiceUnreadable(
            f"voice clip could not be decoded as audio ({decoder_says(exc)}); use WAV, FLAC, MP3 or OGG"
        ) from exc
    if aseg.frame_rate <= 0 or aseg.channels <= 0 or aseg.sample_width not in (1, 2, 4):
        raise VoiceUnreadable(
            f"voice clip has an unusable format ({aseg.channels} channels, {aseg.frame_rate} Hz, "
            f"{aseg.sample_width * 8}-bit); use 16-bit PCM WAV, FLAC or MP3"
        )
    partial = len(aseg.raw_data) % aseg.frame_width
    if partial:  # a file cut inside its last frame: keep the whole frames
        aseg = aseg._spawn(aseg.raw_data[: len(aseg.raw_data) - partial])
    return aseg


def _clip_on_silence(aseg, silence, *, min_silence_len: int, silence_thresh: int):  # type: ignore[no-untyped-def]
    from pydub import AudioSegment

    segments = silence.split_on_silence(
        aseg, min_silence_len=min_silence_len, silence_thresh=silence_thresh, keep_silence=1000, seek_step=10
    )
    wave = AudioSegment.silent(duration=0)
    for segment in segments:
        if len(wave) > 6000 and len(wave + segment) > CLIP_MS:
            return wave, True  # the segments from here on, speech, are not heard
        wave += segment
    return wave, False


def _trim_edges(aseg, silence, threshold: int = -42):  # type: ignore[no-untyped-def]
    start = silence.detect_leading_silence(aseg, silence_threshold=threshold)
    aseg = aseg[start:]
    end = silence.detect_leading_silence(aseg.reverse(), silence_threshold=threshold)
    return aseg[: len(aseg) - end] if end > 0 else aseg


def normalize_voice_text(text: str) -> str:
    """F5-TTS expects the transcript to end with '. ' (or '。')."""
    if text.endswith(". ") or text.endswith("。"):
        return text
    return text + " " if text.endswith(".") else text + ". "


def remove_silence(wave: np.ndarray, sample_rate: int, workdir: Path) -> tuple[np.ndarray, Kept]:
    """Cut silences over 1 s (keeping 0.5 s), on the 16-bit file as F5-TTS does; and which samples were kept."""
    from pydub import AudioSegment

    path = workdir / "generated.wav"
    sf.write(str(path), wave, sample_rate)
    aseg = AudioSegment.from_file(str(path))
    ranges = kept_ranges_ms(aseg)
    kept = AudioSegment.silent(duration=0)
    for start, end in ranges:
        kept += aseg[start:end]
    kept.export(str(path), format="wav")
    samples, _ = sf.read(str(path), dtype="float32")
    spans = tuple((aseg._parse_position(start), aseg._parse_position(end)) for start, end in ranges)
    return np.asarray(samples, dtype=np.float32), Kept(spans)


def kept_ranges_ms(aseg: Any) -> list[tuple[int, int]]:
    """The pieces pydub's `split_on_silence` (0.25) keeps with F5-TTS's settings, in milliseconds, clamped as it
    slices them: its nonsilent ranges widened by keep_silence, an overlap split at its middle. Computed here, not
    by calling it, because it returns the pieces and not where they were."""
    from pydub import silence

    ranges = [[start - 500, end + 500] for start, end in
              silence.detect_nonsilent(aseg, min_silence_len=1000, silence_thresh=-50, seek_step=10)]
    for first, second in zip(ranges, ranges[1:], strict=False):
        if second[0] < first[1]:
            first[1] = second[0] = (first[1] + second[0]) // 2
    length_ms = len(aseg)
    return [(min(max(start, 0), length_ms), min(end, length_ms)) for start, end in ranges]


@dataclass(frozen=True)
class Kept:
    """The spans of a wave `remove_silence` kept, in samples: what maps a position in the wave before to the wave
    after."""

    spans: tuple[tuple[int, int], ...]

    def map(self, position: int) -> int:
        """Where a position of the wave before lands in the wave after (a cut span: where the cut is)."""
        landed = 0
        for start, end in self.spans:
            if position < start:
                return landed
            if position < end:
                return landed + position - start
            landed += end - start
        return landed

