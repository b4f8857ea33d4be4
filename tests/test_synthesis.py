"""Pieces of the synthesis path checked against F5-TTS's own functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.audio import normalize_voice_text
from processor.storage.volume import ModelFolder
from processor.synthesis import chunk_text, cross_fade

from tests.support.oracle import upstream

SENTENCES = st.lists(
    st.text(alphabet=st.sampled_from(list("abcdefg xyz,.;:!?'\"-") + ["。", "，", "你", "好", "é", "ü", "\n"]),
            min_size=0, max_size=60),
    max_size=12,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(text=SENTENCES, max_chars=st.integers(min_value=1, max_value=300))
def test_chunk_text_matches_f5_tts(text: str, max_chars: int) -> None:
    assert chunk_text(text, max_chars) == upstream().chunk_text(text, max_chars)


@pytest.mark.parametrize("text", ["Hello", "Hello.", "Hello. ", "你好。", "Trailing space ", "Ends with ! "])
def test_voice_text_ending_matches_f5_tts(text: str) -> None:
    import tempfile

    ui = upstream()
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        import soundfile as sf

        sf.write(f.name, np.sin(np.linspace(0, 2000, 24000)).astype(np.float32) * 0.5, 24000)
        _, expected = ui.preprocess_ref_audio_text(f.name, text, show_info=lambda *a: None)
    assert normalize_voice_text(text) == expected


def test_cross_fade_overlaps_chunks() -> None:
    a, b = np.ones(1000, dtype=np.float32), np.zeros(1000, dtype=np.float32)
    joined = cross_fade([a, b], seconds=0.01, sample_rate=24000)  # 240 samples
    assert len(joined) == 2000 - 240
    assert joined[759] == 1.0 and joined[1000] == 0.0
    assert np.all(np.diff(joined[760:1000]) <= 0)
    assert len(cross_fade([a, b], seconds=1.0, sample_rate=24000)) == 1000  # overlap capped at the shorter


def quadratic_join(waves: list[np.ndarray], seconds: float, sample_rate: int) -> np.ndarray:
    """F5-TTS 1.1.22's cross-fade loop (infer_batch_process), as the worker had it: the reference."""
    final = waves[0]
    for wave in waves[1:]:
        n = min(int(seconds * sample_rate), len(final), len(wave))
        if n <= 0:
            final = np.concatenate([final, wave])
            continue
        faded = final[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
        final = np.concatenate([final[:-n], faded, wave[n:]])
    return final


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(0, 400), min_size=1, max_size=12), seconds=st.floats(0.0, 0.02),
       seed=st.integers(0, 2**32 - 1))
def test_the_join_equals_f5_tts_s_up_to_float32_rounding(lengths: list[int], seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    waves = [rng.uniform(-1, 1, n).astype(np.float32) for n in lengths]
    ours = cross_fade(waves, seconds, 24000)
    theirs = quadratic_join(waves, seconds, 24000)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_the_join_of_many_chunks_is_float32_and_as_long_as_f5_tts_s() -> None:
    waves: list[Any] = [np.full(3000, i, np.float32) for i in range(400)]
    joined = cross_fade(waves, 0.05, 24000)  # 1200 samples of overlap each
    assert joined.dtype == np.float32 and len(joined) == 400 * 3000 - 399 * 1200
    assert joined[0] == 0 and joined[-1] == 399


@pytest.fixture(scope="module")
def cfm(tiny_model: ModelFolder) -> Any:
    from processor.model import load_model

    return load_model(tiny_model, "cpu").cfm


@pytest.mark.parametrize(("steps", "cfg_strength", "sway"), [(4, 2.0, -1.0), (7, 0.0, 0.5), (16, 1.0, -0.3)])
def test_sampling_loop_equals_cfm_sample(cfm: Any, steps: int, cfg_strength: float, sway: float) -> None:
    """One item through processor.sampling gives CFM.sample's mel bit for bit, the noise drawn as it draws it."""
    import torch
    from f5_tts.model.utils import convert_char_to_pinyin

    from processor.sampling import SamplingItem, SamplingSettings, clamp_duration, sample

    # Noise, not a pure tone: a tone drives the random tiny model into denormal floats (100x slower on CPU).
    audio = torch.randn(1, 3 * 24000, generator=torch.Generator().manual_seed(3)) * 0.1
    text = convert_char_to_pinyin(["Some reference words. And what to say next."])
    with torch.inference_mode():
        torch.manual_seed(11)
        expected, _ = cfm.sample(cond=audio, text=text, duration=400, steps=steps, cfg_strength=cfg_strength,
                                 sway_sampling_coef=sway)
        mel = cfm.mel_spec(audio).permute(0, 2, 1)[0]
        duration = clamp_duration(400, len(text[0]), mel.shape[0])
        noise = torch.randn(duration, cfm.num_channels, generator=torch.Generator().manual_seed(11))
        got = sample(cfm, [SamplingItem(mel, text[0], duration, noise)], SamplingSettings(steps, cfg_strength, sway))
    assert torch.equal(got[0], expected[0])
