"""A manifest's text as a script: which voice speaks each piece, and the pauses between them.

Voice tags are read exactly as F5-TTS 1.1.22's `infer_cli.main` reads them: the text is split before every
`[name]` (`\\w+`, Python's Unicode word characters), a piece's leading tag picks its voice, every tag is removed from
it and it is stripped; a piece of whitespace alone is skipped and the text before the first tag is `main`. Two
differences: an unknown tag is an error naming the voices there are (infer_cli falls back to `main` in silence), and
a tag followed by nothing to say (before a break, or before the next tag) only switches the voice.

Tags are read only when the manifest has a `voices` table. Without one a manifest keeps the meaning it always had:
its "[1]" or "[sic]" is text to speak, so nothing that was valid before changes meaning.

Pauses are SSML's `<break time="500ms"/>` or `<break time="1.5s"/>` (either quote, spaces around `=` and before `/>`),
and a bare `<break/>` is 0.5 s. They are read with or without a voices table: a break was never text anyone
meant to hear. A break splits the text there and the voice carries on after it. Anything else starting `<break`
followed by a space, `/` or `>` is a malformed break. Other tag-like text (`<breakfast>`, `<b>`, `<Break/>`) stays
text.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from processor.errors import InvalidManifest, TextUnusable
from processor.text import check_speakable

MAIN = "main"  # the manifest's own voice; `[main]` always names it
BARE_BREAK_S = 0.5  # `<break/>`: SSML's "medium" strength, as Polly and Azure read it
MAX_BREAK_S = 10.0  # SSML's limit for one break in Polly, Azure and Google
MAX_PAUSES_S = 600.0  # all the silence of one manifest: 50,000 characters of breaks would be 7 hours of it

_TAG_SPLIT = re.compile(r"(?=\[\w+\])")  # infer_cli's reg1
_TAG = re.compile(r"\[(\w+)\]")  # infer_cli's reg2
_BREAK_START = re.compile(r"<break(?=[\s/>])")
_BREAK = re.compile(r"""<break(?:\s+time\s*=\s*(["'])(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<unit>ms|s)\1)?\s*/>""")
BREAK_FORMS = '<break/> (0.5 s), <break time="500ms"/> or <break time="1.5s"/>'


@dataclass(frozen=True)
class Spoken:
    """Text one voice speaks: "main" or a name in the manifest's voices table."""

    voice: str
    text: str


@dataclass(frozen=True)
class Pause:
    """Exact silence, in seconds (0: a split without silence)."""

    seconds: float


Piece = Spoken | Pause


def parse_script(text: str, voices: Collection[str] | None) -> list[Piece]:
    """The pieces of `text`, in order; `voices` are the names in the manifest's voices table (None: it has none,
    and tags are text).

    Adjacent pauses are added up; pauses at the start or the end are kept. A bad tag or break raises
    InvalidManifest; a script with nothing to speak, or a piece with nothing speakable in it, TextUnusable.
    """
    pieces: list[Piece] = []
    spoken: list[tuple[Spoken, int]] = []
    voice = MAIN
    for item in _split_at_breaks(text):
        if isinstance(item, Pause):
            _add_pause(pieces, item)
            continue
        for start, part in _parts(*item, tags=voices is not None):
            voice = _voice_of(part, start, voice, voices)
            said = (_TAG.sub("", part) if voices is not None else part).strip()
            if said:
                piece = Spoken(voice, said)
                pieces.append(piece)
                spoken.append((piece, start))
    if not spoken:
        raise TextUnusable("text has nothing to speak: it holds only breaks and voice tags; give it words to speak")
    for piece, start in spoken:
        where = "text" if len(pieces) == 1 else f"text in voice {piece.voice!r} at position {start}"
        check_speakable(piece.text, where)
    return pieces


def _split_at_breaks(text: str) -> Iterator[tuple[int, str] | Pause]:
    """The text between breaks, each with where it starts, and the breaks as pauses."""
    at = 0
    total = 0.0
    while (found := _BREAK_START.search(text, at)) is not None:
        pause, end = _pause(text, found.start())
        total += pause.seconds
        if total > MAX_PAUSES_S:
            raise InvalidManifest(f"its breaks add up to more than {MAX_PAUSES_S:g} s of silence at position "
                                  f"{found.start()} (counting characters from 0); the limit is {MAX_PAUSES_S:g} s")
        yield at, text[at:found.start()]
        yield pause
        at = end
    yield at, text[at:]


def _pause(text: str, start: int) -> tuple[Pause, int]:
    """The break at `start`, and where the text after it starts."""
    found = _BREAK.match(text, start)
    if found is None:
        snippet = "".join(text[start:start + 40].partition(">")[:2])
        raise InvalidManifest(f"malformed break {snippet!r} at position {start} (counting characters from 0); "
                              f"write {BREAK_FORMS}, at most {MAX_BREAK_S:g} s")
    if found["number"] is None:
        return Pause(BARE_BREAK_S), found.end()
    seconds = float(found["number"]) / (1000 if found["unit"] == "ms" else 1)
    if seconds > MAX_BREAK_S:
        raise InvalidManifest(f"break {found.group()!r} at position {start} (counting characters from 0) is "
                              f"longer than {MAX_BREAK_S:g} s, the most one break may be")
    return Pause(seconds), found.end()


def _add_pause(pieces: list[Piece], pause: Pause) -> None:
    if pieces and isinstance(last := pieces[-1], Pause):
        pieces[-1] = Pause(last.seconds + pause.seconds)
    else:
        pieces.append(pause)


def _parts(start: int, text: str, tags: bool) -> Iterator[tuple[int, str]]:
    """infer_cli's pieces of `text` (the whole of it when tags are not read), each with where it starts; a piece
    of whitespace alone is skipped, as infer_cli skips it."""
    for part in _TAG_SPLIT.split(text) if tags else [text]:
        if part.strip():
            yield start, part
        start += len(part)


def _voice_of(part: str, start: int, voice: str, voices: Collection[str] | None) -> str:
    """The voice a piece is spoken in: its leading tag's, else the voice before it carries on."""
    if voices is None or (tag := _TAG.match(part)) is None:
        return voice
    if tag[1] != MAIN and tag[1] not in voices:
        known = ", ".join([MAIN, *(name for name in voices if name != MAIN)])
        raise InvalidManifest(f"unknown voice tag [{tag[1]}] at position {start} (counting characters from 0); "
                              f"the voices are {known}: add {tag[1]!r} to \"voices\" or fix the tag")
    return str(tag[1])
