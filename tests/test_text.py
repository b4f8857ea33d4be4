"""The chunker's guarantee (processor/text.py): every chunk fits the model, at any speed, in any voice, and the
chunks hold the whole text; texts whose chunks fit are chunked as F5-TTS chunks them; what counts as speakable."""

from __future__ import annotations

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.audio import VoicePrompt, normalize_voice_text
from processor.errors import TextUnusable
from processor.sampling import clamp_duration
from processor.synthesis import max_chunk_chars
from processor.text import FrameBudget, check_speakable, chunk_text, prompt_text

from tests.support.oracle import upstream
from tests.support.paths import VOICE_TEXT

LIMIT = 8192  # frames: F5-TTS's TextEmbedding.precompute_max_pos, in the tiny model as in F5TTS_v1_Base
HOP, RATE = 256, 24000
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme cluster of 7 code points


@pytest.mark.parametrize("text", ["\u200b", "\u200c\u200d \u2060\ufeff", "\ufe0f\U000e0101", "\u0301\u0308",
                                  "\u3164\u115f", "\u200b\t\n\u00a0\u3000"])
def test_invisible_characters_alone_are_not_speakable(text: str) -> None:
    with pytest.raises(TextUnusable):
        check_speakable(text)


@pytest.mark.parametrize("text", ["a\u200b", "!!!", "😀", "你", "٣", "e\u0301", "\ue000", "ा"])
def test_anything_visible_is_speakable(text: str) -> None:
    check_speakable(text)


def budget_for(seconds: float, voice_text: str, speed: float, limit: int = LIMIT) -> tuple[FrameBudget, int]:
    """The budget and max_chars the synthesizer uses for a voice of `seconds` at 24 kHz with this transcript."""
    samples = int(seconds * RATE)
    voice = VoicePrompt(np.zeros((1, samples), np.float32), RATE, normalize_voice_text(voice_text))
    budget = FrameBudget(reference_frames=samples // HOP, prompt_frames=samples // HOP + 1,
                         prompt_text=prompt_text(voice.text), speed=speed, limit=limit)
    return budget, max_chunk_chars(voice, speed)


def frames(budget: FrameBudget, chunk: str) -> int:
    """What sampling gives the chunk: F5-TTS's estimate (infer_batch_process), clamped by its tokens and the prompt."""
    from f5_tts.model.utils import convert_char_to_pinyin

    size = len(chunk.encode("utf-8"))
    speed = 0.3 if size < 10 else budget.speed
    estimate = budget.reference_frames + int(budget.reference_frames / len(budget.prompt_text.encode("utf-8")) * size
                                             / speed)
    return clamp_duration(estimate, len(convert_char_to_pinyin([budget.prompt_text + chunk])[0]), budget.prompt_frames)


def non_space(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


# Pieces a text is made of, from words to runs with no space or sentence end (to be cut further), and any text.
PIECES = ["the ", "quick ", "brown, ", "fox. ", "jumps—", "over… ", "(lazy) ", "你好", "世界。", "、", "😀",
          FAMILY, "🇫🇷", "👍🏽", "e\u0301", "\u200b", "\n", "한국어 ", "https://example.com/a?b=c ", "!!!", "...",
          "a" * 40, "你" * 30, "😀" * 20, "   "]
# A few pieces repeated (up to ~10,000 bytes: texts past the model's limit in most voices), or any text at all.
TEXTS = st.builds(lambda pieces, times: "".join(pieces) * times, st.lists(st.sampled_from(PIECES), min_size=1,
                                                                           max_size=8), st.integers(1, 120)) | st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), max_size=200)
VOICE_TEXTS = st.builds(lambda unit, count: (unit * count)[:2000], st.sampled_from(
    ["a", "Hello there. ", "你好。", "😀", "The quick brown fox jumps over the lazy dog. "]), st.integers(1, 200))
GUARANTEE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GUARANTEE
@given(text=TEXTS, speed=st.floats(0.3, 3.0), seconds=st.floats(0.3, 12.05), voice_text=VOICE_TEXTS,
       limit=st.sampled_from([LIMIT, 4096, 2048]))
def test_every_chunk_fits_the_model_and_the_chunks_hold_the_whole_text(text: str, speed: float, seconds: float,
                                                                       voice_text: str, limit: int) -> None:
    """Smaller limits than the model's stand for harder voices; where one character alone cannot fit, the text
    is unusable in that voice."""
    budget, max_chars = budget_for(seconds, voice_text, speed, limit)
    try:
        chunks = chunk_text(text, max_chars, budget)
    except TextUnusable:
        assert any(frames(budget, char) > limit for char in text if not char.isspace())
        return
    assert all(frames(budget, chunk) <= limit for chunk in chunks)
    assert non_space("".join(chunks)) == non_space(text)
    assert all(chunk == chunk.strip() for chunk in chunks)  # F5-TTS too may end on an empty chunk


@settings(GUARANTEE, max_examples=30)
@given(text=TEXTS, speed=st.floats(0.3, 3.0), seconds=st.floats(0.3, 12.05), voice_text=VOICE_TEXTS)
def test_a_text_whose_chunks_fit_is_chunked_as_f5_tts_chunks_it(text: str, speed: float, seconds: float,
                                                                voice_text: str) -> None:
    budget, max_chars = budget_for(seconds, voice_text, speed)
    theirs = upstream().chunk_text(text, max_chars)
    if all(frames(budget, chunk) <= LIMIT for chunk in theirs):
        assert chunk_text(text, max_chars, budget) == theirs


def test_a_long_sentence_is_cut_at_clauses_then_words_and_never_inside_a_grapheme_cluster() -> None:
    budget, max_chars = budget_for(6.8, VOICE_TEXT, 1.0)
    clauses = "one two three four — five six seven eight » nine ten eleven twelve… " * 20
    assert all(chunk.endswith(("—", "»", "…")) for chunk in chunk_text(clauses, max_chars, budget)[:-1])
    unspaced = "我们今天去公园散步、然后一起吃午饭" * 40
    assert all(chunk.endswith("、") for chunk in chunk_text(unspaced, max_chars, budget)[:-1])
    emoji = ("😀" + FAMILY + "🇫🇷👍🏽e\u0301") * 80
    chunks = chunk_text(emoji, max_chars, budget)
    assert len(chunks) > 1 and all(len(chunk.encode("utf-8")) <= max_chars for chunk in chunks)
    assert [c for chunk in chunks for c in regex.findall(r"\X", chunk)] == regex.findall(r"\X", emoji)


def test_a_cluster_too_long_for_the_voice_is_cut_between_code_points() -> None:
    budget, max_chars = budget_for(12.0, "a", 0.3)  # ~940 frames a byte: a 25-byte emoji sequence does not fit
    family = FAMILY
    chunks = chunk_text(family * 3, max_chars, budget)
    assert "".join(chunks) == family * 3 and all(frames(budget, chunk) <= LIMIT for chunk in chunks)
    assert len(chunks) == len(family * 3)  # max_chars is 1 byte here: one code point a chunk


def test_a_voice_that_leaves_no_room_for_one_character_makes_the_text_unusable() -> None:
    budget = FrameBudget(reference_frames=8000, prompt_frames=8001, prompt_text="a. ", speed=1.0, limit=LIMIT)
    with pytest.raises(TextUnusable, match="no room"):
        chunk_text("Hello there, this is far too much for the voice.", 100, budget)
