"""Subtitles from timed segments (processor/subtitles.py): cues that cover the audio without gaps, lines and cues
within their limits, time shared by characters, and files that SRT and WebVTT readers parse back."""

from __future__ import annotations

import html
import unicodedata
from itertools import pairwise
from pathlib import Path

import pytest
import regex
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.storage.local import LocalOutbox
from processor.subtitles import Cue, Timed, cues, srt_text, subtitle_files, vtt_text, wrap

LONG = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the dark woods, where "
        "nobody has ever seen it again.")
CHINESE = "你好，世界。今天天气很好，我们去公园散步吧。然后我们去吃饭，再回家看书。这是一个很长的句子，没有空格。"


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(cluster[0]) in "WF" else 1 for cluster in regex.findall(r"\X", line))


def check_cover(made: list[Cue], segments: list[Timed], max_chars: int = 42, max_lines: int = 2) -> None:
    assert made[0].start_s == segments[0].start_s and made[-1].end_s == segments[-1].end_s
    assert all(a.end_s == b.start_s for a, b in pairwise(made))
    assert all(cue.start_s <= cue.end_s for cue in made)
    assert all(1 <= len(cue.lines) <= max_lines for cue in made)
    assert all(0 < columns(line) <= max_chars for cue in made for line in cue.lines)


def test_a_segment_that_fits_is_one_cue_with_its_whitespace_as_single_spaces() -> None:
    made = cues([Timed("  Hello,\n  world.\t ", 0.5, 1.25, "town")])
    assert made == [Cue(("Hello, world.",), 0.5, 1.25, "town")]


def test_a_long_segment_splits_at_words_into_cues_covering_its_time_in_proportion_to_characters() -> None:
    segments = [Timed(LONG, 1.0, 9.0), Timed("Short.", 9.0, 10.0)]
    made = cues(segments)
    check_cover(made, segments)
    assert len(made) == 3 and made[-1] == Cue(("Short.",), 9.0, 10.0)
    assert " ".join(line for cue in made[:2] for line in cue.lines) == LONG
    first, second = (sum(len(line.replace(" ", "")) for line in cue.lines) for cue in made[:2])
    assert made[0].end_s == pytest.approx(1.0 + 8.0 * first / (first + second))


def test_time_is_shared_by_characters() -> None:
    made = cues([Timed("aaa bbbbbbbbb", 2.0, 6.0)], max_chars=9, max_lines=1)
    assert [cue.lines for cue in made] == [("aaa",), ("bbbbbbbbb",)]
    assert [(cue.start_s, cue.end_s) for cue in made] == [(2.0, 3.0), (3.0, 6.0)]


def test_a_word_longer_than_a_line_is_cut_filling_the_lines_without_a_hyphen() -> None:
    assert wrap("go " + "a" * 50 + " ok", 20) == ["go " + "a" * 17, "a" * 20, "a" * 13 + " ok"]
    assert wrap("abcdefghij" + "k" * 10, 8) == ["abcdefgh", "ijkkkkkk", "kkkk"]


def test_text_without_spaces_splits_between_clusters_counting_wide_characters_twice() -> None:
    lines = wrap(CHINESE)
    assert all(columns(line) <= 42 for line in lines) and len(lines) == 3
    assert "".join(lines) == CHINESE
    assert not any(line[0] in "，。" for line in lines)  # clause punctuation goes down with the character before it
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one cluster, wide: never cut inside
    assert wrap("e\u0301" * 5 + family * 3, 4) == ["e\u0301" * 4, "e\u0301" + family, family * 2]


def test_vtt_writes_voices_as_spans_and_escapes_markup_and_both_files_parse_back() -> None:
    segments = [Timed("Tom & <Jerry> --> run", 0.0, 1.5, "town"), Timed(LONG, 1.5, 7.25), Timed("", 7.25, 8.0)]
    made = cues(segments)
    vtt = vtt_text(made)
    assert "<v town>Tom &amp; &lt;Jerry&gt; --&gt; run</v>" in vtt
    read = webvtt.from_string(vtt)
    assert [(c.start, c.end) for c in read] == [("00:00:00.000", "00:00:01.500"), ("00:00:01.500", "00:00:05.017"),
                                                ("00:00:05.017", "00:00:07.250")]
    assert read[0].voice == "town" and read[1].voice is None
    assert [html.unescape(c.text) for c in read] == ["\n".join(cue.lines) for cue in made]
    parsed = list(srt.parse(srt_text(made)))
    assert [sub.content for sub in parsed] == ["\n".join(cue.lines) for cue in made]  # SRT: the text alone
    assert [sub.index for sub in parsed] == [1, 2, 3]
    assert parsed[-1].end.total_seconds() == 7.25


def test_a_cue_too_short_for_a_millisecond_is_kept() -> None:
    made = cues([Timed("a b", 1.0, 1.0004)], max_chars=1, max_lines=1)
    assert len(list(srt.parse(srt_text(made)))) == 2 and len(webvtt.from_string(vtt_text(made))) == 2


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        cues([Timed("a", 0, 1)], max_chars=0)


def test_subtitle_files_writes_each_format_asked_once_and_lists_the_keys(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path)
    segments = [Timed("Hello there.", 0.0, 1.0, "town"), Timed("General Kenobi.", 1.0, 2.5, "kenobi")]
    assert subtitle_files(outbox, "job", segments, ["vtt", "srt", "vtt"]) == {"subtitles": ["job/audio.vtt",
                                                                                            "job/audio.srt"]}
    assert webvtt.read(str(tmp_path / "job" / "audio.vtt"))[1].voice == "kenobi"
    assert len(list(srt.parse((tmp_path / "job" / "audio.srt").read_text("utf-8")))) == 2
    assert subtitle_files(outbox, "other", segments, []) == {"subtitles": []}
    assert not (tmp_path / "other").exists()


WORDS = st.text(st.sampled_from("ab漢字é\u0301😀。,"), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.lists(WORDS, min_size=1, max_size=12).map(" ".join), min_size=1, max_size=4),
       max_chars=st.integers(2, 42), max_lines=st.integers(1, 3),
       lengths=st.lists(st.floats(0.0, 30.0), min_size=4, max_size=4))
def test_any_segments_make_cues_within_limits_that_cover_them_and_keep_all_text(
        texts: list[str], max_chars: int, max_lines: int, lengths: list[float]) -> None:
    starts = [sum(lengths[:at]) for at in range(len(texts) + 1)]
    segments = [Timed(text, start, end) for text, (start, end) in zip(texts, pairwise(starts), strict=True)]
    made = cues(segments, max_chars, max_lines)
    assert "".join("".join(cue.lines).replace(" ", "") for cue in made) == "".join("".join(texts).split())
    check_cover(made, segments, max_chars, max_lines)
    assert len(list(srt.parse(srt_text(made)))) == len(made) == len(webvtt.from_string(vtt_text(made)))
