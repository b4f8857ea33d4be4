"""Speech from text with a loaded F5-TTS model.

The steps reproduce F5-TTS 1.1.22's `infer_process` / `infer_batch_process`
(f5_tts/infer/utils_infer.py): the same text chunking, duration estimate,
loudness normalisation, resampling, sampling steps and cross-fade, so the audio
equals F5-TTS's own for the same seed. Deliberate differences: chunks are
sampled one call after another (upstream runs them in threads that draw noise
from the shared global generator in whatever order they start), each request's
noise comes from its own generator (the same numbers `seed_everything` gives),
chunks of several requests may share a sampling call, nothing is printed, a
sentence too long for the model is cut further (`processor.text`: upstream fails
on it), and the cross-fade is written into one float32 array (upstream's join is
quadratic in the chunks).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Protocol

import numpy as np

from processor.audio import VoicePrompt
from processor.errors import F5BatchError, JobTimeout, OutOfMemory, TextUnusable
from processor.manifest import Manifest
from processor.model import LoadedModel
from processor.sampling import (
    MAX_DURATION,
    BatchLimit,
    SamplingItem,
    SamplingSettings,
    bucket_size,
    clamp_duration,
    mask_padding,
    sample,
)
from processor.text import FrameBudget, chunk_text, prompt_text

TARGET_RMS = 0.1
MAX_PROMPT_S = 22  # reference + chunk must stay under this (F5-TTS's training length)
VOICE_CACHE = 32  # voices whose features stay on the device; a prompt's mel is ~100 KB in fp16


def _default(name: str) -> Any:
    return Manifest.model_fields[name].default


@dataclass(frozen=True)
class Retake:
    """One text chunk synthesized again: its noise drawn from a generator of its own, seeded with `seed`."""

    text: str
    seed: int


@dataclass(frozen=True)
class SynthesisRequest:
    """One text in one voice, as the synthesizer takes it; its options and their defaults are the manifest's."""

    text: str
    voice: VoicePrompt
    seed: int
    speed: float = _default("speed")
    nfe_step: int = _default("nfe_step")
    cfg_strength: float = _default("cfg_strength")
    sway_sampling_coef: float = _default("sway_sampling_coef")
    cross_fade: float = _default("cross_fade")
    time_limit_s: float | None = None  # from the start of its synthesis call; past it the job fails (job_timeout)
    retakes: tuple[Retake, ...] = ()  # given: only these chunks of `text`, each with noise from its own seed

    def retake(self, takes: Sequence[Retake], time_limit_s: float | None) -> SynthesisRequest:
        """The same text, voice and settings, for some of its chunks again (the listening check's next takes)."""
        return replace(self, retakes=tuple(takes), time_limit_s=time_limit_s)

    @classmethod
    def for_manifest(cls, manifest: Manifest, voice: VoicePrompt, time_limit_s: float | None) -> SynthesisRequest:
        return cls(text=manifest.text, voice=voice, seed=manifest.effective_seed, speed=manifest.speed,
                   nfe_step=manifest.nfe_step, cfg_strength=manifest.cfg_strength,
                   sway_sampling_coef=manifest.sway_sampling_coef, cross_fade=manifest.cross_fade,
                   time_limit_s=time_limit_s)


@dataclass(frozen=True)
class Rendered:
    """A request's speech, chunk by chunk: each text chunk and its wave, in order (joined by `join`)."""

    texts: tuple[str, ...]
    waves: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Speech:
    """What one synthesis call gave one request."""

    rendered: Rendered
    sample_rate: int
    batch: int  # requests in the call
    started: float  # time.monotonic() at the call's start
    seconds: float  # the call's wall time

    def joined(self, cross_fade_s: float) -> np.ndarray:
        return join(self.rendered.waves, cross_fade_s, self.sample_rate)


def check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise JobTimeout("the job ran past its time limit (F5B_JOB_TIMEOUT_S)")


class Synthesizer(Protocol):
    model_name: str
    sample_rate: int
    max_batch: int  # requests the worker may hand to one synthesize_batch call; 1 = no cross-job batching
    device: str  # where it computes: "cpu", "cuda", "cuda:N"

    def synthesize(self, request: SynthesisRequest) -> np.ndarray: ...

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> list[Rendered | F5BatchError]: ...


def max_chunk_chars(voice: VoicePrompt, speed: float) -> int:
    """Bytes of text per chunk so that the voice plus the chunk fit in ~22 s."""
    seconds = voice.duration_s
    return int(len(voice.text.encode("utf-8")) / seconds * (MAX_PROMPT_S - seconds) * speed)


def frame_limit(cfm: Any) -> int:
    """Frames one sampling item may hold: CFM.sample's clamp, and the positions F5-TTS's text embedding
    precomputes when it has conv layers (8192 in F5TTS_v1_Base, ~87 s); a longer item fails with a shape error."""
    text_embed = cfm.transformer.text_embed
    if not getattr(text_embed, "extra_modeling", False):
        return MAX_DURATION
    return min(MAX_DURATION, int(text_embed.precompute_max_pos))


def join(waves: Sequence[np.ndarray], cross_fade_s: float, sample_rate: int) -> np.ndarray:
    """A request's chunks as one wave, as F5-TTS joins them: end to end, or with a cross-fade."""
    if cross_fade_s <= 0:
        return np.concatenate(waves)
    return cross_fade(waves, cross_fade_s, sample_rate)


def cross_fade(waves: Sequence[np.ndarray], seconds: float, sample_rate: int) -> np.ndarray:
    """Join chunks with a linear cross-fade, as F5-TTS does, into one float32 array allocated once.

    F5-TTS concatenates the whole join again for every chunk (quadratic in the chunks, and float64); here each
    chunk's fade-in is added onto the tail already written. The overlaps are F5-TTS's: each at most `seconds`,
    the next chunk's length and everything joined so far.
    """
    fade = int(seconds * sample_rate)
    overlaps = []
    joined = len(waves[0])
    for wave in waves[1:]:
        overlaps.append(max(min(fade, joined, len(wave)), 0))
        joined += len(wave) - overlaps[-1]
    out = np.empty(joined, dtype=np.float32)
    end = len(waves[0])
    out[:end] = waves[0]
    for wave, n in zip(waves[1:], overlaps, strict=True):
        if n > 0:
            out[end - n : end] = out[end - n : end] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
        out[end : end + len(wave) - n] = wave[n:]
        end += len(wave) - n
    return out


@dataclass(frozen=True)
class _Reference:
    """A voice turned into what sampling needs, on the model's device."""

    mel: Any  # (frames, mels) in the model's dtype
    frames: int  # samples // hop: F5-TTS's duration estimate and cut point use this, not the mel's length
    rms: Any  # the clip's loudness before normalisation; quiet voices give quiet speech


@dataclass(eq=False)
class _Job:
    """A request in flight: one sampling item per text chunk, and their waves as calls return them."""

    request: SynthesisRequest
    reference: _Reference
    texts: list[str]
    items: list[SamplingItem]
    waves: list[np.ndarray | None]
    deadline: float | None  # time.monotonic() past which the request fails
    error: F5BatchError | None = None


@dataclass(frozen=True)
class _Chunk:
    """One text chunk of a request: its place in the request, and its sampling item."""

    job: _Job
    index: int
    item: SamplingItem


class _Pending:
    """Chunks still to sample, longest first, and the requests they belong to; each step costs the chunks it
    takes, not all those left (a 50,000-character text is thousands of chunks)."""

    def __init__(self, chunks: list[_Chunk]) -> None:
        self._chunks = deque(sorted(chunks, key=lambda chunk: chunk.item.duration, reverse=True))
        self._left = Counter(chunk.job for chunk in chunks)

    def expire(self) -> bool:
        """Fail the requests past their time limit, drop the chunks of failed ones; whether any chunk is left."""
        _expire(self._left)
        if any(job.error is not None for job in self._left):
            self._chunks = deque(chunk for chunk in self._chunks if chunk.job.error is None)
            self._left = Counter(chunk.job for chunk in self._chunks)
        return bool(self._chunks)

    def longest(self) -> int:
        return self._chunks[0].item.duration

    def durations(self, count: int) -> list[int]:
        return [chunk.item.duration for chunk in islice(self._chunks, count)]

    def take(self, count: int) -> list[_Chunk]:
        call = [self._chunks.popleft() for _ in range(count)]
        self._left.subtract(chunk.job for chunk in call)
        self._left += Counter()  # drops the requests with no chunk left
        return call

    def put_back(self, call: list[_Chunk]) -> None:
        self._chunks.extendleft(reversed(call))
        self._left.update(chunk.job for chunk in call)


class F5Synthesizer:
    """Synthesizes with one model; chunks of several requests may share a sampling call.

    `max_batch` is both the number of requests the worker may hand to one
    `synthesize_batch` call and the most text chunks one sampling call takes
    (fewer where `memory_fraction` of the accelerator's free memory does not
    hold them, or a past out-of-memory says so). With 1, every chunk is
    sampled alone exactly as F5-TTS's `infer_process` does.
    Above 1, the transformer's attention masks padding, so an item of a batch
    equals its single run up to float rounding. Each request's noise comes from
    its own generator, drawn in chunk order as F5-TTS draws it from the global
    one after `seed_everything(seed)`, so batching never changes which noise an
    item gets. The lock keeps one sampling call at a time on the model.
    """

    def __init__(self, model: LoadedModel, *, max_batch: int = 1, memory_fraction: float = 0.8) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.model = model
        self.model_name = model.name
        self.sample_rate = model.sample_rate
        self.max_batch = max_batch
        self.device = model.device
        self.frame_limit = frame_limit(model.cfm)
        self.limit = BatchLimit(model.cfm, max_batch, memory_fraction)
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._references: OrderedDict[str, _Reference] = OrderedDict()
        # Checked before every transformer forward (each sampling step), so a stuck call stops within a step.
        model.cfm.transformer.register_forward_pre_hook(lambda module, args: check_deadline(self._deadline))
        if max_batch > 1:
            mask_padding(model.cfm.transformer)

    def synthesize(self, request: SynthesisRequest) -> np.ndarray:
        """One request's audio, joined as F5-TTS joins it."""
        outcome = self.synthesize_batch([request])[0]
        if isinstance(outcome, F5BatchError):
            raise outcome
        return join(outcome.waves, request.cross_fade, self.sample_rate)

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> list[Rendered | F5BatchError]:
        """One outcome per request, in order: its chunks' audio, or the error that failed it alone."""
        import torch

        with self._lock, torch.inference_mode():
            started = time.monotonic()
            jobs = [self._job(request, started) for request in requests]
            live = [job for job in jobs if isinstance(job, _Job)]
            for settings, chunks in _by_settings(live).items():
                self._sample_all(chunks, settings)
            return [job if isinstance(job, F5BatchError) else self._finish(job) for job in jobs]

    def _job(self, request: SynthesisRequest, started: float) -> _Job | F5BatchError:
        try:
            reference = self._reference(request.voice)
            budget = _budget(reference, request, self.frame_limit)
            if request.retakes:
                chunks = [take.text for take in request.retakes]
            else:
                chunks = chunk_text(request.text, max_chunk_chars(request.voice, request.speed), budget)
            if not chunks:
                raise TextUnusable("text has nothing to speak once split into sentences")
            items = self._items(reference, request, budget, chunks)
        except Exception as exc:  # a request that cannot be prepared fails alone
            return _failure(exc)
        limit = request.time_limit_s
        return _Job(request, reference, chunks, items, [None] * len(items),
                    None if limit is None else started + limit)

    def _reference(self, voice: VoicePrompt) -> _Reference:
        """A voice's features, from the cache when this clip was used before (keyed by `voice.key`)."""
        cached = self._references.get(voice.key) if voice.key else None
        if cached is not None:
            self._references.move_to_end(voice.key)
            return cached
        reference = self._reference_features(voice)
        if voice.key:
            self._references[voice.key] = reference
            if len(self._references) > VOICE_CACHE:
                self._references.popitem(last=False)
        return reference

    def _reference_features(self, voice: VoicePrompt) -> _Reference:
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
        audio = audio.to(self.model.device)
        cfm = self.model.cfm
        mel = cfm.mel_spec(audio).permute(0, 2, 1).to(next(cfm.parameters()).dtype)[0]
        return _Reference(mel=mel, frames=audio.shape[-1] // self.model.hop_length, rms=rms)

    def _items(self, reference: _Reference, request: SynthesisRequest, budget: FrameBudget,
               chunks: list[str]) -> list[SamplingItem]:
        """Tokens, length and noise per chunk; the noise drawn in chunk order from the request's own seed, or for a
        retake from the chunk's own."""
        import torch
        from f5_tts.model.utils import convert_char_to_pinyin

        cfm = self.model.cfm
        generator = torch.Generator(device=cfm.device).manual_seed(request.seed)
        items = []
        for index, chunk in enumerate(chunks):
            if request.retakes:
                generator = torch.Generator(device=cfm.device).manual_seed(request.retakes[index].seed)
            tokens = convert_char_to_pinyin([budget.prompt_text + chunk])[0]
            duration = clamp_duration(budget.frames(len(chunk.encode("utf-8"))), len(tokens), reference.mel.shape[0])
            noise = torch.randn(duration, cfm.num_channels, generator=generator, device=cfm.device,
                                dtype=reference.mel.dtype)
            items.append(SamplingItem(cond=reference.mel, tokens=tokens, duration=duration, noise=noise))
        return items

    def _sample_all(self, chunks: list[_Chunk], settings: SamplingSettings) -> None:
        """Longest first, in calls of similar lengths; a call that runs out of memory is retried in halves."""
        pending = _Pending(chunks)
        while pending.expire():
            cap = self.limit.items(pending.longest(), settings.steps)
            call = pending.take(bucket_size(pending.durations(cap), cap))
            if not self._sample_call(call, settings):
                pending.put_back(call)

    def _sample_call(self, call: list[_Chunk], settings: SamplingSettings) -> bool:
        """Sample and decode one call; False when it ran out of memory and should be retried smaller."""
        import torch

        try:
            self._sample_and_decode(call, settings)
            self.limit.fitted()
            return True
        except torch.OutOfMemoryError:
            pass  # handled below, once the exception no longer holds the failed call's tensors
        if self.model.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if len(call) > 1:
            self.limit.ran_out(call[0].item.duration, settings.steps, len(call))
            return False
        call[0].job.error = OutOfMemory("accelerator out of memory")
        return True

    def _sample_and_decode(self, call: list[_Chunk], settings: SamplingSettings) -> None:
        jobs = _jobs_of(call)
        deadlines = [job.deadline for job in jobs]
        # No request is cut before its own limit: the call stops only once the latest one has passed.
        self._deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        try:
            mels = sample(self.model.cfm, [chunk.item for chunk in call], settings)
        except JobTimeout as exc:
            for job in jobs:
                job.error = exc
            return
        finally:
            self._deadline = None
        for chunk, mel in zip(call, mels, strict=True):
            chunk.job.waves[chunk.index] = self._decode(chunk.job.reference, mel)
        _expire(jobs)

    def _decode(self, reference: _Reference, mel: Any) -> np.ndarray:
        """The vocoder on one item, trimmed to its own length: its convolutions must not see another's padding."""
        import torch

        generated = mel.unsqueeze(0).to(torch.float32)[:, reference.frames :, :].permute(0, 2, 1)
        wave = self.model.vocoder.decode(generated)
        if reference.rms < TARGET_RMS:
            wave = wave * reference.rms / TARGET_RMS
        result: np.ndarray = wave.squeeze().cpu().numpy()
        return result

    def _finish(self, job: _Job) -> Rendered | F5BatchError:
        if job.error is not None:
            return job.error
        if any(wave is None for wave in job.waves):
            return F5BatchError("unexpected error: a chunk was not sampled")
        return Rendered(tuple(job.texts), tuple(wave for wave in job.waves if wave is not None))


def _budget(reference: _Reference, request: SynthesisRequest, limit: int) -> FrameBudget:
    return FrameBudget(reference_frames=reference.frames, prompt_frames=reference.mel.shape[0],
                       prompt_text=prompt_text(request.voice.text), speed=request.speed, limit=limit)


def _by_settings(jobs: list[_Job]) -> dict[SamplingSettings, list[_Chunk]]:
    """Chunks of any requests may share a call when their sampling settings are equal."""
    groups: dict[SamplingSettings, list[_Chunk]] = {}
    for job in jobs:
        request = job.request
        settings = SamplingSettings(request.nfe_step, request.cfg_strength, request.sway_sampling_coef)
        groups.setdefault(settings, []).extend(_Chunk(job, index, item) for index, item in enumerate(job.items))
    return groups


def _jobs_of(chunks: Iterable[_Chunk]) -> list[_Job]:
    return list(dict.fromkeys(chunk.job for chunk in chunks))


def _expire(jobs: Iterable[_Job]) -> None:
    """Requests past their own time limit fail now, and take no more sampling."""
    for job in jobs:
        if job.error is None:
            try:
                check_deadline(job.deadline)
            except JobTimeout as exc:
                job.error = exc


def _failure(exc: Exception) -> F5BatchError:
    import torch

    if isinstance(exc, F5BatchError):
        return exc
    error: F5BatchError
    if isinstance(exc, torch.OutOfMemoryError):
        error = OutOfMemory("accelerator out of memory")
    else:
        error = F5BatchError(f"unexpected error: {exc!r}")
    error.__cause__ = exc
    return error
