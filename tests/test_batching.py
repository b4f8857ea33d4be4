"""Cross-job batching: an item of a batch sounds as it does alone, per-request seeds hold, failures stay alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.audio import VoicePrompt, normalize_voice_text
from processor.errors import F5BatchError
from processor.model import LoadedModel, load_model
from processor.sampling import BatchLimit, bucket_size
from processor.storage.volume import ModelFolder
from processor.synthesis import F5Synthesizer, Rendered, Retake, SynthesisRequest, chunk_text, join, max_chunk_chars

from tests.support.paths import VOICE, VOICE_TEXT

# Measured on CPU: batched and single runs differ by float rounding only (up to 7e-8 here): the attention
# kernel blocks a padded row differently. 1e-6 is still far below one 16-bit step (3e-5).
TOLERANCE = 1e-6
STEPS = 4
LONG = " ".join(f"Sentence number {i} is here to make the text longer than one chunk." for i in range(5))


@pytest.fixture(scope="module")
def model(tiny_model: ModelFolder) -> LoadedModel:
    return load_model(tiny_model, "cpu")


@pytest.fixture(scope="module")
def voices() -> tuple[VoicePrompt, VoicePrompt]:
    """The example voice at 22.05 kHz, and a quiet stereo one at 44.1 kHz (other resampling and loudness)."""
    samples, rate = sf.read(VOICE, dtype="float32", always_2d=True)
    narrator = VoicePrompt(np.ascontiguousarray(samples.T), rate, normalize_voice_text(VOICE_TEXT), key="narrator")
    up = np.repeat(samples.T[:, : rate * 4], 2, axis=1)
    quiet = VoicePrompt(np.ascontiguousarray(np.concatenate([up * 0.3, up * 0.2])), rate * 2,
                        "The quick brown fox jumps over the lazy dog. ", key="quiet")
    return narrator, quiet


@pytest.fixture
def batch_sizes(model: LoadedModel) -> Iterator[list[int]]:
    """Items per transformer call (guidance doubles them inside the call)."""
    sizes: list[int] = []
    handle = model.cfm.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["x"].shape[0]), with_kwargs=True)
    yield sizes
    handle.remove()


def requests(narrator: VoicePrompt, quiet: VoicePrompt) -> list[SynthesisRequest]:
    return [
        SynthesisRequest("Hello from the batch worker.", narrator, seed=1, nfe_step=STEPS),
        SynthesisRequest("The same voice says something else.", narrator, seed=2, nfe_step=STEPS, speed=1.2),
        SynthesisRequest(LONG, narrator, seed=3, nfe_step=STEPS),
        SynthesisRequest("A quiet voice speaks here, slowly.", quiet, seed=4, nfe_step=STEPS, speed=0.9),
        SynthesisRequest("And quietly it goes on.", quiet, seed=5, nfe_step=STEPS),
        SynthesisRequest("Hi.", quiet, seed=6, nfe_step=STEPS),
    ]


def joined_batch(synthesizer: F5Synthesizer, reqs: list[SynthesisRequest]) -> list[np.ndarray | F5BatchError]:
    """`synthesize_batch`, each request's chunks joined as `synthesize` joins them."""
    rate = synthesizer.sample_rate
    return [outcome if isinstance(outcome, F5BatchError) else join(outcome.waves, request.cross_fade, rate)
            for request, outcome in zip(reqs, synthesizer.synthesize_batch(reqs), strict=True)]


def assert_close(batched: list[np.ndarray | F5BatchError], singles: list[np.ndarray]) -> None:
    assert len(batched) == len(singles)
    for got, expected in zip(batched, singles, strict=True):
        assert isinstance(got, np.ndarray), got
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOLERANCE


@dataclass
class BatchRun:
    synthesizer: F5Synthesizer
    requests: list[SynthesisRequest]
    singles: list[np.ndarray]  # synthesize(r), one request at a time
    batched: list[np.ndarray | F5BatchError]  # synthesize_batch(requests)
    sizes: list[int]  # items per transformer call of the batch


@pytest.fixture(scope="module")
def batch_run(model: LoadedModel, voices: tuple[VoicePrompt, VoicePrompt]) -> BatchRun:
    reqs = requests(*voices)
    synthesizer = F5Synthesizer(model, max_batch=8)
    singles = [synthesizer.synthesize(r) for r in reqs]
    sizes: list[int] = []
    handle = model.cfm.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["x"].shape[0]), with_kwargs=True)
    try:
        batched = joined_batch(synthesizer, reqs)
    finally:
        handle.remove()
    return BatchRun(synthesizer, reqs, singles, batched, sizes)


def test_a_batch_equals_its_requests_one_by_one(model: LoadedModel, batch_run: BatchRun) -> None:
    reqs = batch_run.requests
    chunks = [len(chunk_text(r.text, max_chunk_chars(r.voice, r.speed))) for r in reqs]
    assert max(batch_run.sizes) > 2, "chunks of several requests shared a sampling call"
    assert len(batch_run.sizes) < STEPS * sum(chunks), "fewer sampling calls than chunks"
    assert_close(batch_run.batched, batch_run.singles)
    # synthesize(r) batches the chunks of a long text; max_batch=1 samples every chunk alone, as F5-TTS does.
    long = chunks.index(max(chunks))
    assert chunks[long] > 1
    assert_close([F5Synthesizer(model).synthesize(reqs[long])], [batch_run.singles[long]])


def test_a_seed_changes_only_its_own_request(batch_run: BatchRun) -> None:
    reqs = list(batch_run.requests)
    reqs[1] = replace(reqs[1], seed=reqs[1].seed + 100)
    again = joined_batch(batch_run.synthesizer, reqs)
    for i, (a, b) in enumerate(zip(batch_run.batched, again, strict=True)):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        if i == 1:
            assert np.abs(a - b).max() > 100 * TOLERANCE
        else:
            assert np.abs(a - b).max() <= TOLERANCE


def test_a_bad_request_fails_alone(model: LoadedModel, voices: Any) -> None:
    narrator, quiet = voices
    no_transcript = VoicePrompt(narrator.samples, narrator.sample_rate, "", key="")
    reqs = requests(narrator, quiet)[:2] + [
        SynthesisRequest("", narrator, seed=7, nfe_step=STEPS),  # nothing to speak
        SynthesisRequest("Hello.", no_transcript, seed=8, nfe_step=STEPS),  # a bug's stand-in
    ]
    synthesizer = F5Synthesizer(model, max_batch=8)
    outcomes = joined_batch(synthesizer, reqs)
    assert [getattr(o, "code", None) for o in outcomes] == [None, None, "text_unusable", "internal_error"]
    assert_close(outcomes[:2], [synthesizer.synthesize(r) for r in reqs[:2]])
    with pytest.raises(F5BatchError) as caught:
        synthesizer.synthesize(reqs[2])
    assert caught.value.code == "text_unusable"


def test_out_of_memory_halves_the_call_and_remembers(model: LoadedModel, voices: Any,
                                                     batch_sizes: list[int]) -> None:
    import torch

    narrator, _ = voices
    reqs = [SynthesisRequest(f"Job number {i} says its piece.", narrator, seed=i, nfe_step=STEPS) for i in range(4)]
    synthesizer = F5Synthesizer(model, max_batch=4)
    singles = [synthesizer.synthesize(r) for r in reqs]
    frames: list[int] = []

    def out_of_memory_once(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if kwargs["x"].shape[0] == 4:
            frames.append(kwargs["x"].shape[1])
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = model.cfm.transformer.register_forward_pre_hook(out_of_memory_once, with_kwargs=True)
    try:
        batch_sizes.clear()
        batched = joined_batch(synthesizer, reqs)
    finally:
        handle.remove()
    assert batch_sizes[0] == 4 and set(batch_sizes[1:]) == {2}, "one failed call of 4, then calls of 2"
    assert_close(batched, singles)
    assert synthesizer.limit.items(frames[0], STEPS) == 2, "the lower limit holds for later calls"
    for _ in range(16):
        synthesizer.limit.fitted()
    assert synthesizer.limit.items(frames[0], STEPS) == 4, "and creeps back up while calls fit"


def test_out_of_memory_alone_fails_each_request_transiently(model: LoadedModel, voices: Any) -> None:
    import torch

    def out_of_memory(module: Any, args: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    synthesizer = F5Synthesizer(model, max_batch=4)
    reqs = requests(*voices)[:2]
    handle = model.cfm.transformer.register_forward_pre_hook(out_of_memory)
    try:
        outcomes = joined_batch(synthesizer, reqs)
    finally:
        handle.remove()
    assert [getattr(o, "code", None) for o in outcomes] == ["out_of_memory", "out_of_memory"]
    assert_close(joined_batch(synthesizer, reqs), [synthesizer.synthesize(r) for r in reqs])


def test_a_call_runs_until_its_latest_deadline(model: LoadedModel, voices: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that ticks once per sampling step: deadlines are counted in steps."""
    import processor.synthesis

    narrator, _ = voices
    synthesizer = F5Synthesizer(model, max_batch=4)
    relaxed = SynthesisRequest("Job number one says its piece.", narrator, seed=1, nfe_step=STEPS)
    expected = synthesizer.synthesize(relaxed)
    clock = {"now": 0.0, "steps": 0}

    def tick(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        assert kwargs["x"].shape[0] == 2, "both requests share the call"
        clock["now"] += 1
        clock["steps"] += 1

    monkeypatch.setattr(processor.synthesis, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    handle = model.cfm.transformer.register_forward_pre_hook(tick, with_kwargs=True)
    try:
        hurried = SynthesisRequest("Job number two says its piece.", narrator, seed=2, nfe_step=STEPS, time_limit_s=1.5)
        outcomes = joined_batch(synthesizer, [hurried, relaxed])
        assert clock["steps"] == STEPS, "the call ran to the end: one request has no limit"
        assert getattr(outcomes[0], "code", None) == "job_timeout"
        assert_close(outcomes[1:], [expected])

        clock.update(now=0.0, steps=0)
        outcomes = joined_batch(synthesizer, [hurried, replace(relaxed, time_limit_s=2.5)])
        assert [getattr(o, "code", None) for o in outcomes] == ["job_timeout", "job_timeout"]
        assert clock["steps"] == 3 < STEPS, "past the first limit, stopped at the first step past the latest"
    finally:
        handle.remove()


def test_voice_features_are_cached_by_key(model: LoadedModel, voices: Any) -> None:
    narrator, quiet = voices
    computed: list[int] = []
    handle = model.cfm.mel_spec.register_forward_hook(lambda module, args, out: computed.append(1))
    try:
        synthesizer = F5Synthesizer(model, max_batch=4)
        say = [SynthesisRequest("Hello there.", voice, seed=1, nfe_step=2) for voice in (narrator, narrator, quiet)]
        first = joined_batch(synthesizer, say)
        assert len(computed) == 2, "one voice used twice is turned into features once"
        synthesizer.synthesize(say[0])
        assert len(computed) == 2, "and stays cached for later calls"
        unkeyed = replace(narrator, key="")
        joined_batch(synthesizer, [replace(say[0], voice=unkeyed)] * 2)
        assert len(computed) == 4, "a voice without a key is never cached"
        other = replace(quiet, samples=quiet.samples[:, ::-1].copy(), key="other")
        changed = synthesizer.synthesize(replace(say[2], voice=other))
    finally:
        handle.remove()
    assert len(computed) == 5
    assert isinstance(first[2], np.ndarray) and not np.array_equal(changed, first[2]), "a new key is not served stale"
    assert np.array_equal(changed, F5Synthesizer(model).synthesize(replace(say[2], voice=other)))


def test_calls_group_similar_lengths() -> None:
    assert bucket_size([100, 90, 80, 75, 74, 10], cap=8) == 4
    assert bucket_size([100, 90, 80], cap=2) == 2
    assert bucket_size([100, 50], cap=8) == 1
    assert bucket_size([7], cap=1) == 1


def test_free_memory_caps_a_call(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = BatchLimit(model.cfm, most=64, memory_fraction=0.8)
    per_item = limit._memory.item_bytes(1000, 32)
    monkeypatch.setattr(limit, "_free_bytes", lambda: 10 * per_item + 1)
    assert limit.items(1000, 32) == 10
    assert limit.items(2000, 32) == 5, "longer items: fewer per call"
    monkeypatch.setattr(limit, "_free_bytes", lambda: 0)
    assert limit.items(1000, 32) == 1, "always at least one"


@pytest.mark.parametrize("pe_attn_head", [None, 1])
def test_the_broadcast_padding_mask_matches_f5_tts_expanded_one(model: LoadedModel, pe_attn_head: int | None) -> None:
    import torch
    from f5_tts.model.modules import AttnProcessor

    from processor.sampling import PaddingMaskedAttention

    transformer = model.cfm.transformer
    attn = transformer.transformer_blocks[0].attn
    upstream = AttnProcessor(pe_attn_head=pe_attn_head, attn_backend="torch", attn_mask_enabled=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, transformer.dim, generator=generator)
    mask = torch.arange(50)[None, :] < torch.tensor([50, 41, 37])[:, None]
    rope = transformer.rotary_embed.forward_from_seq_len(50)
    with torch.inference_mode():
        expected = upstream(attn, x, mask=mask, rope=rope)
        got = PaddingMaskedAttention(upstream)(attn, x, mask=mask, rope=rope)
        assert torch.equal(got, expected)
        assert torch.equal(PaddingMaskedAttention(upstream)(attn, x[:1], rope=rope), upstream(attn, x[:1], rope=rope))


def test_a_retake_is_its_chunk_again_with_noise_from_its_own_seed_and_batches_with_others(
        model: LoadedModel, voices: tuple[VoicePrompt, VoicePrompt]) -> None:
    """The listening check's retake of chunk 1 with seed 8 is that chunk's text alone as a job seeded 8: its noise
    is the first drawn from its own generator, whichever other requests share its call."""
    narrator, quiet = voices
    synthesizer = F5Synthesizer(model, max_batch=4)
    whole = SynthesisRequest(LONG, narrator, seed=7, nfe_step=STEPS)
    first = synthesizer.synthesize_batch([whole])[0]
    assert isinstance(first, Rendered) and len(first.texts) > 1
    retake = whole.retake([Retake(first.texts[1], 8)], time_limit_s=None)
    other = SynthesisRequest("And quietly it goes on.", quiet, seed=5, nfe_step=STEPS)
    again, beside = synthesizer.synthesize_batch([retake, other])
    assert isinstance(again, Rendered) and again.texts == (first.texts[1],) and isinstance(beside, Rendered)
    alone = synthesizer.synthesize(SynthesisRequest(first.texts[1], narrator, seed=8, nfe_step=STEPS))
    assert_close([again.waves[0]], [alone])
    assert_close([beside.waves[0]], [synthesizer.synthesize(other)])
    assert not np.array_equal(again.waves[0], first.waves[1]), "another seed, another take"
