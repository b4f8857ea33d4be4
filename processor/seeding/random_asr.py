"""The tiny random-weight Whisper behind `f5-batch seed --tiny` (`<volume>/asr/tiny/`): the ASR path, offline.

Built with the real transformers classes and a tokenizer made here: a byte-level BPE
(the 256 byte tokens and a few merges) with Whisper's special tokens, so that
`pipeline("automatic-speech-recognition", model=<folder>)` loads it and `generate`
runs with a language and a task. Its weights are noise, so its transcripts are
gibberish, but the same audio always gives the same text, in a fraction of a second
on CPU. Generation may only emit lowercase letters, spaces and the merges: the
gibberish is plain words, never broken UTF-8, which a text comparison can score.
"""

from __future__ import annotations

import json
import string
from typing import Any

from processor.storage.volume import AsrFolder

TINY_ASR = "tiny"
LANGUAGES = ("en", "de", "fr", "es", "it", "zh", "ja")
MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"))
END, START = "<|endoftext|>", "<|startoftranscript|>"
TASKS = ("<|translate|>", "<|transcribe|>")
SPECIAL_TOKENS = (
    END, START, *(f"<|{code}|>" for code in LANGUAGES), *TASKS,
    "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
)
# Whisper's timestamp tokens follow <|notimestamps|>: 0.00 s to 30.00 s in 20 ms steps.
TIMESTAMPS = tuple(f"<|{step * 0.02:.2f}|>" for step in range(1501))
MAX_TOKENS = 24  # a transcript of the random model: a few words, quickly
MEL_BINS = 80
ARCH: dict[str, Any] = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_source_positions": 1500,  # 30 s of 80-bin mel frames, halved by the encoder's stride
    "max_target_positions": 64,
    "init_std": 0.5,
}
NOTE = "random weights: transcripts are gibberish (tests and offline checks only)"


def byte_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's byte-to-unicode alphabet (as Whisper's tokenizer uses it), then the merges' results."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    for left, right in MERGES:
        vocab.setdefault(left + right, len(vocab))
    return vocab, list(MERGES)


def build_tiny_asr(folder: AsrFolder, seed: int = 0) -> None:
    """Write the tiny Whisper into `folder` (no SHA256SUMS: the seeding flow or the caller records them)."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per file of a 1 MB model: noise between seed's lines
    folder.path.mkdir(parents=True, exist_ok=True)
    vocab, merges = byte_vocab()
    (folder.path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder.path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges), encoding="utf-8"
    )
    tokenizer = WhisperTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=END)
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS],
                         special_tokens=True)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in TIMESTAMPS])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=MEL_BINS, pad_token_id=ids[END], bos_token_id=ids[END],
        eos_token_id=ids[END], decoder_start_token_id=ids[START], **ARCH,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config(GenerationConfig, ids, allowed_ids(vocab), len(tokenizer))
    model.save_pretrained(str(folder.path), safe_serialization=True)
    model.generation_config.save_pretrained(str(folder.path))
    tokenizer.save_pretrained(str(folder.path))
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(str(folder.path))
    config_file = folder.path / "config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, "random_weights": True, "note": NOTE}, indent=2) + "\n")


def allowed_ids(vocab: dict[str, int]) -> set[int]:
    """The tokens the random model may emit: lowercase letters, the space (Ġ) and the merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    chars = {alphabet[ord(char)] for char in string.ascii_lowercase + " "}
    return {index for token, index in vocab.items() if token in chars or len(token) > 1}


def generation_config(cls: Any, ids: dict[str, int], allowed: set[int], vocab_size: int) -> Any:
    """What Whisper's `generate` reads: start token, language and task ids, the no-timestamps token, suppressions."""
    lang_to_id = {f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES}
    suppressed = [index for index in range(vocab_size) if index not in allowed and index != ids[END]]
    return cls(
        decoder_start_token_id=ids[START], bos_token_id=ids[END], eos_token_id=ids[END], pad_token_id=ids[END],
        max_length=MAX_TOKENS, is_multilingual=True, lang_to_id=lang_to_id,
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        suppress_tokens=suppressed, begin_suppress_tokens=[ids[END]],
    )
