"""How far a transcript is from its text: word and character error rates, on text normalised as Whisper's are.

The normalisers are transformers' copies of Whisper's own (`EnglishTextNormalizer`,
with the checkpoint's spelling map; `BasicTextNormalizer` for other languages),
so "Mr." and "mister", "20" and "twenty"-style differences in punctuation and case
are not counted as errors. Languages written without spaces between words are
scored by characters: their WER would count a whole sentence as one word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import regex

from processor.languages import WHISPER_LANGUAGES

Metric = Literal["wer", "cer"]

# Scripts written without spaces between words: CER is the measure that means something there.
_SPACELESS = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}]")
_LETTER = regex.compile(r"\p{L}")
SPACELESS_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "yue"})


@dataclass(frozen=True)
class Errors:
    """Edits (substitutions, deletions, insertions) against the reference's length, for words and characters."""

    word_edits: int = 0
    words: int = 0
    char_edits: int = 0
    chars: int = 0

    def __add__(self, other: Errors) -> Errors:
        return Errors(self.word_edits + other.word_edits, self.words + other.words,
                      self.char_edits + other.char_edits, self.chars + other.chars)

    @property
    def wer(self) -> float:
        return _rate(self.word_edits, self.words)

    @property
    def cer(self) -> float:
        return _rate(self.char_edits, self.chars)

    def rate(self, metric: Metric) -> float:
        return self.wer if metric == "wer" else self.cer


def _rate(edits: int, length: int) -> float:
    """A rate; for an empty reference, 0 when nothing was heard either, else 1 per edit."""
    return edits / length if length else float(edits)


def language_code(language: str | None) -> str | None:
    """A manifest's `voice_language` (a Whisper code or name) as a code: `english` → `en`."""
    if language is None or language in WHISPER_LANGUAGES:
        return language
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    return str(TO_LANGUAGE_CODE.get(language, language))


def metric_for(text: str, language: str | None) -> Metric:
    """CER for a language written without spaces (by its code, else by the text's letters), else WER."""
    if language is not None:
        return "cer" if language in SPACELESS_LANGUAGES else "wer"
    letters = _LETTER.findall(text)
    spaceless = sum(1 for letter in letters if _SPACELESS.match(letter))
    return "cer" if letters and spaceless * 2 >= len(letters) else "wer"


class Scorer:
    """Scores transcripts against texts in one language (None: English rules, unless the text is spaceless)."""

    def __init__(self, spelling: Mapping[str, str] | None = None) -> None:
        self._spelling = dict(spelling or {})

    def errors(self, text: str, heard: str, language: str | None) -> Errors:
        import jiwer

        metric = metric_for(text, language)
        normalise = self._normaliser(language if language is not None or metric == "cer" else "en")
        reference, hypothesis = normalise(text).split(), normalise(heard).split()
        errors = Errors()
        if reference or hypothesis:
            errors = _word_errors(jiwer, reference, hypothesis)
        joiner = "" if metric == "cer" else " "
        ref_chars, hyp_chars = joiner.join(reference), joiner.join(hypothesis)
        if ref_chars or hyp_chars:
            errors = errors + _char_errors(jiwer, ref_chars, hyp_chars)
        return errors

    def _normaliser(self, language: str | None) -> Any:
        return _normaliser(language == "en", tuple(sorted(self._spelling.items())))


@lru_cache(maxsize=4)
def _normaliser(english: bool, spelling: tuple[tuple[str, str], ...]) -> Any:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    return EnglishTextNormalizer(dict(spelling)) if english else BasicTextNormalizer()


def _word_errors(jiwer: Any, reference: list[str], hypothesis: list[str]) -> Errors:
    if not reference:
        return Errors(word_edits=len(hypothesis))
    if not hypothesis:
        return Errors(word_edits=len(reference), words=len(reference))
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return Errors(word_edits=out.substitutions + out.deletions + out.insertions,
                  words=out.substitutions + out.deletions + out.hits)


def _char_errors(jiwer: Any, reference: str, hypothesis: str) -> Errors:
    if not reference:
        return Errors(char_edits=len(hypothesis))
    if not hypothesis:
        return Errors(char_edits=len(reference), chars=len(reference))
    out = jiwer.process_characters(reference, hypothesis)
    return Errors(char_edits=out.substitutions + out.deletions + out.insertions,
                  chars=out.substitutions + out.deletions + out.hits)
