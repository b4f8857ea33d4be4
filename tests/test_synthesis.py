"""Pieces of the synthesis path checked against F5-TTS's own functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.audio import normalize_voice_text
from processor.synthesis import chunk_text, cross_fade

from f5_tts_oracle import upstream

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
