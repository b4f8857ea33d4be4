"""The text to speak: whether anything in it makes a sound, and the chunks the model takes it in.

F5-TTS 1.1.22 (`chunk_text` in f5_tts/infer/utils_infer.py) cuts a text at sentence ends into chunks of at most
`max_chars` UTF-8 bytes (about 22 s of speech with the voice) and keeps a longer sentence whole. One sampling item
holds the voice and the chunk, and the model takes at most so many frames in one: F5TTS_v1_Base's text embedding
has 8192 positions (~87 s), and a longer item fails with a shape error. So a chunk that does not fit is cut
again into pieces of at most `max_chars`: at clause punctuation, then at spaces, then between grapheme clusters
(scripts written without spaces, emoji), and between the code points of a cluster only where the cluster alone
does not fit. Texts whose chunks fit are chunked exactly as F5-TTS chunks them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from processor.errors import TextUnusable

_SENTENCE_END = re.compile(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])")
SHORT_CHUNK_BYTES = 10  # F5-TTS speaks a chunk shorter than this at speed 0.3, so that it is not swallowed
SHORT_CHUNK_SPEED = 0.3
TOKENS_PER_CHAR = 2  # convert_char_to_pinyin gives a character at most two tokens (a space and its pinyin)

# Nothing to hear: controls, format characters (zero-width spaces and joiners, U+2060, U+FEFF, tags), lone
# combining marks and variation selectors, separators; and the Hangul fillers, letters that are invisible by design.
_SILENT_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Mn", "Me", "Zs", "Zl", "Zp"})
_SILENT_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")

# Where a too-long sentence is cut first: after punctuation that ends a clause, where a space follows it, or
# anywhere after a full-width one (scripts without spaces). Opening brackets and quotes begin a clause instead.
_CLAUSE_ENDS = frozenset({"Po", "Pd", "Pe", "Pf"})
CLAUSES, WORDS, CLUSTERS, CODE_POINTS = range(4)


def check_speakable(text: str, what: str = "text") -> None:
    """Refuse a text with nothing to speak (TextUnusable): the model would make seconds of noise out of it. `what`
    names the text in the message."""
    if not any(map(_sounds, text)):
        first = next((char for char in text if not char.isspace()), text[0])
        raise TextUnusable(f"{what} has nothing to speak: it holds only invisible characters (zero-width, format "
                           f"or combining marks, such as U+{ord(first):04X}); send text with words in it")


def _sounds(char: str) -> bool:
    return not char.isspace() and unicodedata.category(char) not in _SILENT_CATEGORIES and char not in _SILENT_LETTERS


@dataclass(frozen=True)
class FrameBudget:
    """What one chunk costs in a voice, and what the model takes.

    Sampling gives a chunk max(estimate, tokens + 1, prompt frames + 1) frames (CFM.sample's clamp), where the
    estimate is F5-TTS's: the voice's frames, plus its frames per transcript byte times the chunk's bytes over
    the speed. All three must stay within `limit`.
    """

    reference_frames: int  # the voice's samples // hop: the estimate's unit
    prompt_frames: int  # the voice's mel frames, which the item holds first
    prompt_text: str  # the transcript as sampling reads it, before the chunk
    speed: float
    limit: int  # frames the model takes in one item
    prompt_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_bytes", len(self.prompt_text.encode("utf-8")))

    def frames(self, chunk_bytes: int) -> int:
        """F5-TTS's duration estimate (infer_batch_process), for a chunk of `chunk_bytes` UTF-8 bytes."""
        speed = SHORT_CHUNK_SPEED if chunk_bytes < SHORT_CHUNK_BYTES else self.speed
        return self.reference_frames + int(self.reference_frames / self.prompt_bytes * chunk_bytes / speed)

    def fits_size(self, chunk_bytes: int, chunk_chars: int) -> bool:
        """Whether any chunk of this size fits, with its tokens bounded from its characters."""
        most_tokens = TOKENS_PER_CHAR * (len(self.prompt_text) + chunk_chars)
        return self._frames_fit(chunk_bytes) and most_tokens < self.limit

    def fits(self, chunk: str) -> bool:
        """Whether this chunk fits; its tokens are counted only where the bound says they might not."""
        size = len(chunk.encode("utf-8"))
        if self.fits_size(size, len(chunk)):
            return True
        return self._frames_fit(size) and tokens(self.prompt_text + chunk) < self.limit

    def _frames_fit(self, chunk_bytes: int) -> bool:
        return self.prompt_frames < self.limit and self.frames(chunk_bytes) <= self.limit


def tokens(text: str) -> int:
    """The tokens the model reads for `text` (its pinyin for Chinese, its characters otherwise)."""
    from f5_tts.model.utils import convert_char_to_pinyin

    return len(convert_char_to_pinyin([text])[0])


def chunk_text(text: str, max_chars: int = 135, budget: FrameBudget | None = None) -> list[str]:
    """Chunks of `text` to sample one by one: F5-TTS's, with each one that does not fit `budget` cut again."""
    chunks = sentence_chunks(text, max_chars)
    if budget is None:
        return chunks
    return [piece for chunk in chunks for piece in ([chunk] if budget.fits(chunk) else recut(chunk, max_chars, budget))]


def sentence_chunks(text: str, max_chars: int) -> list[str]:
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


def prompt_text(voice_text: str) -> str:
    """The transcript as F5-TTS puts it before every chunk: with a space after a one-byte last character."""
    return voice_text + " " if len(voice_text[-1].encode("utf-8")) == 1 else voice_text


def recut(chunk: str, max_chars: int, budget: FrameBudget) -> list[str]:
    """`chunk` in pieces that fit `budget`, packed greedily up to `max_chars` bytes each."""
    import regex  # knows grapheme clusters (UAX #29), which `re` does not

    packed: list[list[str]] = []
    current: list[str] = []
    size = _Size()
    for atom in _atoms(regex.findall(r"\X", chunk), CLAUSES, max_chars, budget):
        joined = size.then(_Size.of(atom))
        if current and joined.fits(max_chars, budget):
            current += atom
            size = joined
            continue
        if current:
            packed.append(current)
        current, size = list(atom), _Size.of(atom)
    if current:
        packed.append(current)
    return ["".join(units).strip() for units in packed]


def _atoms(units: Sequence[str], level: int, max_chars: int, budget: FrameBudget) -> Iterator[Sequence[str]]:
    """The pieces `level` cuts `units` into, each cut at the next level where it does not fit on its own."""
    for piece in _cut(units, level):
        size = _Size.of(piece)
        if size.fits(max_chars, budget):
            yield piece
        elif level < CLUSTERS:
            yield from _atoms(piece, level + 1, max_chars, budget)
        elif size.fits(None, budget) or budget.fits("".join(piece).strip()):
            yield piece  # one cluster or code point: kept whole, past max_chars, where the model takes it
        elif level == CLUSTERS:
            yield from _atoms([char for unit in piece for char in unit], CODE_POINTS, max_chars, budget)
        else:
            raise TextUnusable(f"text cannot be spoken in this voice: its clip and transcript leave no room for "
                               f"U+{ord(piece[0][0]):04X} within the model's {budget.limit} frames; use a shorter clip")


def _cut(units: Sequence[str], level: int) -> list[Sequence[str]]:
    """`units` cut where `level` allows, before a unit that is not whitespace: whitespace stays with what it follows."""
    pieces: list[Sequence[str]] = []
    start = 0
    for i in range(1, len(units)):
        if not units[i].isspace() and _boundary(units, i, level):
            pieces.append(units[start:i])
            start = i
    if units:
        pieces.append(units[start:])
    return pieces


def _boundary(units: Sequence[str], i: int, level: int) -> bool:
    before = units[i - 1]
    if level >= CLUSTERS:
        return True
    if level == WORDS:
        return before.isspace()
    if not before.isspace():
        return _ends_clause(before) and unicodedata.east_asian_width(before[0]) in ("W", "F")
    j = i - 1
    while j >= 0 and units[j].isspace():
        j -= 1
    return j >= 0 and _ends_clause(units[j])


def _ends_clause(unit: str) -> bool:
    return unicodedata.category(unit[0]) in _CLAUSE_ENDS


@dataclass(frozen=True)
class _Size:
    """UTF-8 bytes and code points of some units, and of their trailing whitespace, which a chunk sheds."""

    bytes: int = 0
    chars: int = 0
    trailing_bytes: int = 0
    trailing_chars: int = 0

    @classmethod
    def of(cls, units: Sequence[str]) -> _Size:
        size_bytes = chars = trailing_bytes = trailing_chars = 0
        for unit in units:
            length = len(unit.encode("utf-8"))
            size_bytes, chars = size_bytes + length, chars + len(unit)
            if unit.isspace():
                trailing_bytes, trailing_chars = trailing_bytes + length, trailing_chars + len(unit)
            else:
                trailing_bytes = trailing_chars = 0
        return cls(size_bytes, chars, trailing_bytes, trailing_chars)

    def then(self, other: _Size) -> _Size:
        """The size of these units followed by `other`'s."""
        if other.trailing_bytes == other.bytes:  # all whitespace: it adds to the trailing whitespace
            return _Size(self.bytes + other.bytes, self.chars + other.chars, self.trailing_bytes + other.bytes,
                         self.trailing_chars + other.chars)
        return _Size(self.bytes + other.bytes, self.chars + other.chars, other.trailing_bytes, other.trailing_chars)

    def fits(self, max_chars: int | None, budget: FrameBudget) -> bool:
        """Whether the units, stripped, fit `budget` (and `max_chars`, unless None)."""
        stripped = self.bytes - self.trailing_bytes
        if max_chars is not None and stripped > max_chars:
            return False
        return budget.fits_size(stripped, self.chars - self.trailing_chars)
