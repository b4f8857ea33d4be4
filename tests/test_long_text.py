"""Every valid text can be spoken: texts F5-TTS's chunking leaves too long for the model, and texts with nothing
to speak, through the real worker CLI; the chunker's guarantee and the cross-fade join one level down.

Decisions these tests pin down (see `processor.text`):
- A chunk is at most what the model takes in one sampling item (8192 frames for a model whose text embedding
  has conv layers, as F5TTS_v1_Base and the tiny model do), at any speed, for any voice: a sentence too long for
  it is cut at clause punctuation, then spaces, then between grapheme clusters. Its audio is as long as F5-TTS's
  duration estimate says, as for any other text.
- A text whose chunks fit is chunked exactly as F5-TTS chunks it.
- A text of invisible characters only (zero-width, format, variation selectors) fails with `text_unusable`
  before its voice is fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import regex
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.audio import VoicePrompt, normalize_voice_text, prepare_voice
from processor.errors import TextUnusable
from processor.sampling import clamp_duration
from processor.storage.volume import Volume
from processor.synthesis import cross_fade, max_chunk_chars
from processor.text import FrameBudget, check_speakable, chunk_text, prompt_text

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.oracle import upstream
from tests.support.paths import VOICE, VOICE_TEXT
from tests.support.results import read_result
from tests.support.workers import local_worker_args, run_cli

LIMIT = 8192  # frames: F5-TTS's TextEmbedding.precompute_max_pos, in the tiny model as in F5TTS_v1_Base
HOP, RATE = 256, 24000
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme cluster of 7 code points
WORDS = "the quick brown fox jumps over the lazy dog and keeps on running".split()


def words(count: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(count))


# Each is one "sentence" to F5-TTS's chunking, past the model's limit in the example voice (about 1,110 bytes at
# speed 1, 330 at 0.3): on the code before this change each failed with internal_error (a shape error).
LONG: dict[str, tuple[str, float]] = {
    "no-punctuation": (words(230), 1.0),
    "slow": (words(64), 0.3),
    "chinese-without-spaces": ("我们今天去公园散步然后一起吃午饭" * 24, 1.0),
    "urls": (" ".join(f"https://example.com/a/{i}/page?query=value&x={i}" for i in range(24)), 1.0),
    "emoji": (("😀" + FAMILY + "🇫🇷👍🏽") * 27, 1.0),
    "punctuation": ("...---!!!???" * 96, 1.0),
}
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\ufe0f" * 40


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Path:
    """One `--once` run over the long texts, the invisible one and a plain one; the outbox."""
    root = tmp_path_factory.mktemp("long-text")
    inbox = inbox_with_voice(root)
    for name, (text, speed) in LONG.items():
        write_manifest(inbox, name, manifest(text, speed=speed, nfe_step=2))
    write_manifest(inbox, "invisible", manifest(INVISIBLE, nfe_step=2, voice="voices/missing.wav"))
    write_manifest(inbox, "plain", manifest("Hello there. This is a normal text.", nfe_step=2))
    out = run_cli(*local_worker_args(root, tiny_volume, "--once"), timeout=280)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return root / "outbox"


def estimated_seconds(text: str, speed: float, tmp: Path) -> float:
    """The speech F5-TTS's duration estimate gives `text` in the example voice: its bytes at the voice's pace."""
    voice = prepare_voice(VOICE, VOICE_TEXT, tmp)
    return voice.duration_s / len(prompt_text(voice.text).encode("utf-8")) * len(text.encode("utf-8")) / speed


@pytest.mark.parametrize("name", LONG)
def test_a_text_too_long_for_one_sampling_item_is_spoken(batch: Path, name: str, tmp_path: Path) -> None:
    result = read_result(batch, name)
    assert result["status"] == "succeeded", result["error"]
    samples, rate = sf.read(batch / result["audio"], dtype="float32")
    assert rate == RATE and np.isfinite(samples).all()
    text, speed = LONG[name]
    # Cut into more chunks than F5-TTS's one, each short chunk a little slower: the length stays the estimate's.
    assert 0.85 < len(samples) / rate / estimated_seconds(text, speed, tmp_path) < 1.1


def test_a_text_of_invisible_characters_fails_before_its_voice_is_fetched(batch: Path) -> None:
    result = read_result(batch, "invisible")
    assert result["status"] == "failed" and result["error"]["code"] == "text_unusable", result["error"]
    assert "nothing to speak" in result["error"]["message"] and "U+200B" in result["error"]["message"]
    assert result["timings"]["fetch"] == 0  # its voice does not exist: fetching it would have failed otherwise


def test_a_plain_text_in_the_same_batch_succeeds(batch: Path) -> None:
    assert read_result(batch, "plain")["status"] == "succeeded"


# --- the chunker's guarantee ----------------------------------------------------------------------------------------


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
GUARANTEE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
    assert all(chunk and chunk == chunk.strip() for chunk in chunks)


@GUARANTEE
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


# --- the join -------------------------------------------------------------------------------------------------------


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
