"""Audio in and out: reference-clip preparation, silence removal, encoding.

The reference-clip steps reproduce F5-TTS 1.1.22's `preprocess_ref_audio_text`
and `remove_silence_for_generated_wav` (f5_tts/infer/utils_infer.py) step for
step, with the same pydub calls, so that the worker's audio equals F5-TTS's own
for the same inputs. Unlike upstream they write only inside the job's processing
folder, which is emptied after the job (upstream leaves a temp file per voice).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from processor.errors import VoiceUnreadable

CLIP_MS = 12_000
MIN_VOICE_S = 0.3

# soundfile format and subtype per output format. WAV/FLAC are 16-bit, as F5-TTS writes.
ENCODINGS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass(frozen=True)
class VoicePrompt:
    """A reference clip ready for the model: float32 samples (channels, frames) at its own rate."""

    samples: np.ndarray
    sample_rate: int
    text: str

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[-1]) / self.sample_rate


def prepare_voice(path: Path, voice_text: str, workdir: Path) -> VoicePrompt:
    """Clip to ~12 s on silences, trim the edges, append 50 ms of silence; fix the transcript's ending."""
    from pydub import AudioSegment, silence

    try:
        aseg = AudioSegment.from_file(str(path))
    except Exception as exc:  # pydub raises CouldntDecodeError, IndexError, OSError... for bad files
        raise VoiceUnreadable(f"voice clip could not be decoded as audio: {type(exc).__name__}: {exc}") from exc
    if len(aseg) < MIN_VOICE_S * 1000:
        raise VoiceUnreadable(f"voice clip is {len(aseg) / 1000:.2f} s long; at least {MIN_VOICE_S} s is needed")

    clipped = _clip_on_silence(aseg, silence, min_silence_len=1000, silence_thresh=-50)
    if len(clipped) > CLIP_MS:
        clipped = _clip_on_silence(aseg, silence, min_silence_len=100, silence_thresh=-40)
    if len(clipped) > CLIP_MS:
        clipped = clipped[:CLIP_MS]
    aseg = _trim_edges(clipped, silence) + AudioSegment.silent(duration=50)

    prepared = workdir / "voice.prepared.wav"
    aseg.export(str(prepared), format="wav")
    samples, rate = sf.read(str(prepared), dtype="float32", always_2d=True)
    if samples.shape[0] < MIN_VOICE_S * rate or not np.isfinite(samples).all() or not np.any(samples):
        raise VoiceUnreadable("voice clip is silent or too short once its silences are trimmed")
    samples = np.ascontiguousarray(samples.T)
    return VoicePrompt(samples=samples, sample_rate=int(rate), text=normalize_voice_text(voice_text))


def _clip_on_silence(aseg, silence, *, min_silence_len: int, silence_thresh: int):  # type: ignore[no-untyped-def]
    from pydub import AudioSegment

    segments = silence.split_on_silence(
        aseg, min_silence_len=min_silence_len, silence_thresh=silence_thresh, keep_silence=1000, seek_step=10
    )
    wave = AudioSegment.silent(duration=0)
    for segment in segments:
        if len(wave) > 6000 and len(wave + segment) > CLIP_MS:
            break
        wave += segment
    return wave


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


def remove_silence(wave: np.ndarray, sample_rate: int, workdir: Path) -> np.ndarray:
    """Cut silences over 1 s (keeping 0.5 s), on the 16-bit file as F5-TTS does."""
    from pydub import AudioSegment, silence

    path = workdir / "generated.wav"
    sf.write(str(path), wave, sample_rate)
    aseg = AudioSegment.from_file(str(path))
    segments = silence.split_on_silence(aseg, min_silence_len=1000, silence_thresh=-50, keep_silence=500, seek_step=10)
    kept = AudioSegment.silent(duration=0)
    for segment in segments:
        kept += segment
    kept.export(str(path), format="wav")
    samples, _ = sf.read(str(path), dtype="float32")
    return np.asarray(samples, dtype=np.float32)


def encode(wave: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    container, subtype = ENCODINGS[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()
