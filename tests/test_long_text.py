"""Every valid text can be spoken, through the real worker CLI: texts F5-TTS's chunking leaves too long for one
sampling item, and a text with nothing to speak, in one `--once` batch with a plain one.

Decisions these tests pin down (see `processor.text`; the chunker's guarantee itself is in tests/test_text.py):
- A sentence too long for the model's frames (8192 for a model whose text embedding has conv layers, as
  F5TTS_v1_Base and the tiny model do) is cut at clause punctuation, then spaces, then between grapheme
  clusters, at any speed: it is spoken, as long as F5-TTS's duration estimate says, like any other text.
- A text of invisible characters only (zero-width, format, variation selectors) fails with `text_unusable`
  before its voice is fetched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from processor.audio import prepare_voice
from processor.storage.volume import Volume

from tests.support.hostile_world import LONG, write_texts
from tests.support.manifests import inbox_with_voice
from tests.support.paths import VOICE, VOICE_TEXT
from tests.support.results import read_result
from tests.support.workers import local_worker_args, run_cli

RATE = 24000



@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Path:
    """One `--once` run over the long texts, the invisible one and a plain one; the outbox.

    Each long text is some 90 s of speech: without guidance (cfg_strength 0, one transformer pass a step instead
    of two) and with a job's chunks sampled together (--max-batch), it costs a few seconds."""
    root = tmp_path_factory.mktemp("long-text")
    write_texts(inbox_with_voice(root))
    out = run_cli(*local_worker_args(root, tiny_volume, "--once", "--max-batch", "8"), timeout=280)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return root / "outbox"


def estimated_seconds(text: str, speed: float, tmp: Path) -> float:
    """The speech F5-TTS's duration estimate gives `text` in the example voice: its bytes at the voice's pace."""
    voice = prepare_voice(VOICE, VOICE_TEXT, tmp)
    transcript = voice.text + " "  # as F5-TTS reads it before a chunk: the example's ends in ". "
    return voice.duration_s / len(transcript.encode("utf-8")) * len(text.encode("utf-8")) / speed


@pytest.mark.parametrize("name", LONG)
def test_a_text_too_long_for_one_sampling_item_is_spoken(batch: Path, name: str, tmp_path: Path) -> None:
    result = read_result(batch, name)
    assert result["status"] == "succeeded", result["error"]
    samples, rate = sf.read(batch / result["audio"], dtype="float32")
    assert rate == RATE and np.isfinite(samples).all()
    text, speed = LONG[name]
    # The cross-fades between chunks and the estimate's rounding take a little off; nothing is lost or repeated.
    assert 0.85 < len(samples) / rate / estimated_seconds(text, speed, tmp_path) < 1.1


def test_a_text_of_invisible_characters_fails_before_its_voice_is_fetched(batch: Path) -> None:
    result = read_result(batch, "invisible")
    assert result["status"] == "failed" and result["error"]["code"] == "text_unusable", result["error"]
    assert "nothing to speak" in result["error"]["message"] and "U+200B" in result["error"]["message"]
    assert result["timings"]["fetch"] == 0  # its voice does not exist: fetching it would have failed otherwise


def test_a_plain_text_in_the_same_batch_succeeds(batch: Path) -> None:
    assert read_result(batch, "plain")["status"] == "succeeded"
