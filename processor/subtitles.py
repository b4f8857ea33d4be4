"""Subtitles of a job's audio: its timed segments as cues of a few short lines, written as SRT and WebVTT.

Subtitle guidelines (BBC, Netflix) keep a line to about 42 characters and a cue to two lines. A segment (one
text chunk of the final audio, as result.json's `segments` times it) that fits is one cue; a longer one is wrapped
at spaces into lines and the lines grouped into cues, its time shared among them in proportion to their
characters (grapheme clusters, spaces not counted), so the cues follow each other without a gap and the first
starts where the segment starts, the last ends where it ends. Both formats count milliseconds: a cue shorter
than one is still written (players skip it), never dropped with its text.

What a line holds is counted in columns: a cluster takes two when it is wide (East Asian Wide or Fullwidth: CJK,
most emoji), else one, so that 42 columns are 21 Chinese or Japanese characters, near those scripts' guidelines
(13 to 16 a line). A word wider than a line (a text written without spaces is one such word) is cut between
clusters, never inside one: it begins after the line's last word when its first cluster fits there and fills
the lines that follow, without a hyphen (which would read as part of the text in scripts without hyphenation).
A cluster wider than a whole line (a wide character with `max_chars` 1) takes a line of its own.

Voices: WebVTT has a voice span for them (`<v town>…</v>`, players show or style the name). SRT has none: a
`TOWN:` prefix would become words of the subtitle, counted in its line and read as speech by tools that re-read
the file (aligners, translators), so an SRT cue carries the text alone; use the VTT file for who speaks.
"""

from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import regex  # grapheme clusters (UAX #29), which `re` does not know
import srt
import webvtt

from processor.storage import Outbox

MAX_CHARS = 42
MAX_LINES = 2
_WIDE = frozenset({"W", "F"})
_CLAUSE_ENDS = frozenset({"Po", "Pe", "Pf"})  # other, closing and final punctuation
_VTT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


@dataclass(frozen=True)
class Timed:
    """One text chunk of the final audio and where it is spoken in it, in seconds."""

    text: str
    start_s: float
    end_s: float
    voice: str | None = None  # the voice's name when the manifest has several


@dataclass(frozen=True)
class Cue:
    """What a subtitle shows at once: at most `max_lines` lines, from `start_s` to `end_s`."""

    lines: tuple[str, ...]
    start_s: float
    end_s: float
    voice: str | None = None


def cues(segments: Sequence[Timed], max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES) -> list[Cue]:
    """The cues of these segments, in order; a segment without text (only whitespace) has none."""
    if max_chars < 1 or max_lines < 1:
        raise ValueError(f"a cue needs at least one line of one character, not {max_lines} of {max_chars}")
    return [cue for segment in segments for cue in _segment_cues(segment, max_chars, max_lines)]


def _segment_cues(segment: Timed, max_chars: int, max_lines: int) -> list[Cue]:
    lines = wrap(segment.text, max_chars)
    if not lines:
        return []
    groups = [tuple(lines[at:at + max_lines]) for at in range(0, len(lines), max_lines)]
    weights = [sum(_clusters(line) for line in group) for group in groups]
    bounds = _shares(segment.start_s, segment.end_s, weights)
    return [Cue(group, start, end, segment.voice) for group, (start, end) in zip(groups, pairwise(bounds), strict=True)]


def _shares(start: float, end: float, weights: Sequence[int]) -> list[float]:
    """Boundaries from `start` to `end` (both exact), the spans in proportion to `weights`."""
    total, done = sum(weights), 0
    bounds = [start]
    for weight in weights[:-1]:
        done += weight
        bounds.append(start + (end - start) * done / total)
    return [*bounds, end]


def wrap(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """The text's lines of at most `max_chars` columns, its whitespace (newlines too) read as single spaces."""
    lines = _Lines(max_chars)
    for word in text.split():
        lines.add(regex.findall(r"\X", word))
    return lines.done()


@dataclass
class _Lines:
    """Greedy wrapping: each word on the current line when it fits, else on the next one; a word wider than a
    line is cut between its clusters, and a cut never leaves punctuation that ends a clause (`。`, `，`, `」`) at
    the start of a line: the cluster before it goes down with it."""

    max_chars: int
    lines: list[str] = field(default_factory=list)
    line: list[str] = field(default_factory=list)  # the current line's clusters
    room: int = 0

    def __post_init__(self) -> None:
        self.room = self.max_chars

    def add(self, clusters: list[str]) -> None:
        space = 1 if self.line else 0
        width = sum(map(_width, clusters))
        if space + width > self.room and (width <= self.max_chars or space + _width(clusters[0]) > self.room):
            self._break()
        elif space:
            self._put(" ")
        for cluster in clusters:
            if self.line and _width(cluster) > self.room:
                self._cut(cluster)
            self._put(cluster)

    def _cut(self, before: str) -> None:
        carry = (_ends_clause(before) and len(self.line) > 1 and self.line[-1] != " "
                 and _width(self.line[-1]) + _width(before) <= self.max_chars)
        carried = self.line.pop() if carry else None
        self._break()
        if carried is not None:
            self._put(carried)

    def _put(self, cluster: str) -> None:
        self.line.append(cluster)
        self.room -= _width(cluster)

    def _break(self) -> None:
        if self.line:
            self.lines.append("".join(self.line).rstrip(" "))
        self.line, self.room = [], self.max_chars

    def done(self) -> list[str]:
        self._break()
        return self.lines


def _ends_clause(cluster: str) -> bool:
    return unicodedata.category(cluster[0]) in _CLAUSE_ENDS


def _width(cluster: str) -> int:
    return 2 if unicodedata.east_asian_width(cluster[0]) in _WIDE else 1


def _clusters(line: str) -> int:
    return len(regex.findall(r"\X", line.replace(" ", "")))


def _milliseconds(seconds: float) -> int:
    """Both formats count milliseconds: each boundary is rounded once, so touching cues still touch."""
    return round(seconds * 1000)


def srt_text(cues: Sequence[Cue]) -> str:
    """The cues as SRT (SubRip), numbered from 1."""
    subtitles = [srt.Subtitle(index, datetime.timedelta(milliseconds=_milliseconds(cue.start_s)),
                              datetime.timedelta(milliseconds=_milliseconds(cue.end_s)), "\n".join(cue.lines))
                 for index, cue in enumerate(cues, start=1)]
    # reindex=False: compose would otherwise drop a cue that rounds to no time at all, and its text with it
    composed: str = srt.compose(subtitles, reindex=False)
    return composed


def vtt_text(cues: Sequence[Cue]) -> str:
    """The cues as WebVTT, a cue with a voice inside its voice span."""
    captions = [webvtt.Caption(start=_vtt_time(cue.start_s), end=_vtt_time(cue.end_s), text=_vtt_cue_text(cue))
                for cue in cues]
    return webvtt.WebVTT(captions=captions).content


def _vtt_time(seconds: float) -> str:
    return str(webvtt.models.Timestamp.from_seconds(_milliseconds(seconds) / 1000))


def _vtt_cue_text(cue: Cue) -> str:
    """Cue text is markup: `&` and `<` (and `>`, for symmetry) are written as character references; webvtt-py
    writes the text as given."""
    text = "\n".join(line.translate(_VTT_ESCAPES) for line in cue.lines)
    if cue.voice is None:
        return text
    return f"<v {cue.voice.translate(_VTT_ESCAPES)}>{text}</v>"


SUBTITLE_WRITERS: dict[str, Callable[[Sequence[Cue]], str]] = {"srt": srt_text, "vtt": vtt_text}


def subtitle_files(outbox: Outbox, job_id: str, segments: Sequence[Timed], formats: Sequence[str]) -> dict[str, Any]:
    """Write `<id>/audio.<format>` for each subtitle format asked (once each, in the manifest's order); the result's
    `subtitles` field lists their keys ([] when none was asked)."""
    timed = cues(segments) if formats else []
    keys = []
    for name in dict.fromkeys(formats):
        key = f"{job_id}/audio.{name}"  # outputs.job_key's layout; importing it would make an import cycle
        outbox.put(key, SUBTITLE_WRITERS[name](timed).encode("utf-8"))
        keys.append(key)
    return {"subtitles": keys}
