"""Speech from text with a loaded F5-TTS model.

The steps reproduce F5-TTS 1.1.22's `infer_process` / `infer_batch_process`
(f5_tts/infer/utils_infer.py): the same text chunking, duration estimate,
loudness normalisation, resampling, sampling call and cross-fade, so the audio
equals F5-TTS's own for the same seed. Two deliberate differences: chunks are
sampled one after another (upstream runs them in threads that draw noise from
the shared global generator in whatever order they start), and nothing is
printed.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from processor.audio import VoicePrompt
from processor.errors import PermanentError, TextUnusable, TransientError
from processor.model import LoadedModel

TARGET_RMS = 0.1
MAX_PROMPT_S = 22  # reference + chunk must stay under this (F5-TTS's training length)

_SENTENCE_END = re.compile(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])")


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: VoicePrompt
    seed: int
    speed: float = 1.0
    nfe_step: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    cross_fade: float = 0.15
    deadline: float | None = None  # time.monotonic() after which the job is abandoned


def check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise PermanentError("the job ran past its time limit (F5B_JOB_TIMEOUT_S)", code="job_timeout")


class Synthesizer(Protocol):
    model_name: str
    sample_rate: int

    def synthesize(self, request: SynthesisRequest) -> np.ndarray: ...


def chunk_text(text: str, max_chars: int = 135) -> list[str]:
    """Split at sentence punctuation into chunks of at most `max_chars` UTF-8 bytes (F5-TTS's rule)."""
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        if not sentence:
            continue
        piece = sentence + " " if len(sentence[-1].encode("utf-8")) == 1 else sentence
        if len(current.encode("utf-8")) + len(sentence.encode("utf-8")) <= max_chars:
            current += piece
        else:
            if current:
                chunks.append(current.strip())
            current = piece
    if current:
        chunks.append(current.strip())
    return chunks


def max_chunk_chars(voice: VoicePrompt, speed: float) -> int:
    """Bytes of text per chunk so that the voice plus the chunk fit in ~22 s."""
    seconds = voice.duration_s
    return int(len(voice.text.encode("utf-8")) / seconds * (MAX_PROMPT_S - seconds) * speed)


def cross_fade(waves: list[np.ndarray], seconds: float, sample_rate: int) -> np.ndarray:
    """Join chunks with a linear cross-fade, as F5-TTS does."""
    final = waves[0]
    for wave in waves[1:]:
        n = min(int(seconds * sample_rate), len(final), len(wave))
        if n <= 0:
            final = np.concatenate([final, wave])
            continue
        faded = final[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
        final = np.concatenate([final[:-n], faded, wave[n:]])
    return final


class F5Synthesizer:
    """Synthesizes with one model, one request at a time.

    The lock matters: sampling draws from torch's global generator, seeded per
    request, so two requests interleaving would change each other's audio.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.model_name = model.name
        self.sample_rate = model.sample_rate
        self._lock = threading.Lock()
        self._deadline: float | None = None
        # Checked before every transformer forward (each sampling step), so a stuck job stops within a step.
        model.cfm.transformer.register_forward_pre_hook(lambda module, args: check_deadline(self._deadline))

    def synthesize(self, request: SynthesisRequest) -> np.ndarray:
        import torch

        chunks = chunk_text(request.text, max_chunk_chars(request.voice, request.speed))
        if not chunks:
            raise TextUnusable("text has nothing to speak once split into sentences")
        with self._lock:
            reference, rms = self._reference_audio(request.voice)
            torch.manual_seed(request.seed)
            self._deadline = request.deadline
            try:
                waves = [self._sample_chunk(reference, rms, request, chunk) for chunk in chunks]
            except torch.OutOfMemoryError as exc:
                raise TransientError("accelerator out of memory", code="out_of_memory") from exc
            finally:
                self._deadline = None
                # CFM.sample clears the text-embedding cache only when it completes; after an
                # abort (time limit, out of memory) a stale cache would poison the next job.
                self.model.cfm.transformer.clear_cache()
        if request.cross_fade <= 0:
            return np.concatenate(waves)
        return cross_fade(waves, request.cross_fade, self.sample_rate)

    def _reference_audio(self, voice: VoicePrompt) -> tuple[Any, Any]:
        import torch
        import torchaudio

        audio = torch.from_numpy(voice.samples)
        if audio.shape[0] > 1:
            audio = torch.mean(audio, dim=0, keepdim=True)
        rms = torch.sqrt(torch.mean(torch.square(audio)))
        if rms < TARGET_RMS:
            audio = audio * TARGET_RMS / rms
        if voice.sample_rate != self.sample_rate:
            audio = torchaudio.transforms.Resample(voice.sample_rate, self.sample_rate)(audio)
        return audio.to(self.model.device), rms

    def _sample_chunk(self, reference: Any, rms: Any, request: SynthesisRequest, chunk: str) -> np.ndarray:
        import torch
        from f5_tts.model.utils import convert_char_to_pinyin

        voice_text = request.voice.text
        if len(voice_text[-1].encode("utf-8")) == 1:
            voice_text = voice_text + " "
        # F5-TTS slows very short chunks down so that they are not swallowed.
        speed = 0.3 if len(chunk.encode("utf-8")) < 10 else request.speed
        hop = self.model.hop_length
        reference_frames = reference.shape[-1] // hop
        duration = reference_frames + int(
            reference_frames / len(voice_text.encode("utf-8")) * len(chunk.encode("utf-8")) / speed
        )
        with torch.inference_mode():
            generated, _ = self.model.cfm.sample(
                cond=reference,
                text=convert_char_to_pinyin([voice_text + chunk]),
                duration=duration,
                steps=request.nfe_step,
                cfg_strength=request.cfg_strength,
                sway_sampling_coef=request.sway_sampling_coef,
            )
            mel = generated.to(torch.float32)[:, reference_frames:, :].permute(0, 2, 1)
            wave = self.model.vocoder.decode(mel)
            if rms < TARGET_RMS:
                wave = wave * rms / TARGET_RMS
            result: np.ndarray = wave.squeeze().cpu().numpy()
        return result
