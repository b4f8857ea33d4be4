"""A manifest's text as a script: voice tags read as F5-TTS's infer_cli reads them, SSML breaks as pauses.

Decisions these tests pin down (see `processor.script`):
- Tags are read only with a voices table: without one, "[1]" is text, so no manifest valid before changes meaning.
- An unknown tag is an error naming the voices (infer_cli speaks it in `main`); a tag with nothing after it only
  switches the voice.
- A break splits the text and the voice carries on after it; breaks side by side add up; a break at the start or
  the end is kept; `<break` followed by a space, `/` or `>` that is no valid break is an error, any other tag-like
  text is text.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.errors import InvalidManifest, TextUnusable
from processor.manifest import Manifest, VoiceSpec, check_manifest
from processor.script import MAX_BREAK_S, MAX_PAUSES_S, Pause, Spoken, parse_script

from tests.support.manifests import manifest
from tests.support.paths import REPO

STORY = files("f5_tts").joinpath("infer/examples/multi/story.txt")
INFER_CLI = files("f5_tts").joinpath("infer/infer_cli.py")


def infer_cli_voices(text: str, voices: set[str]) -> list[tuple[str, str]]:
    """The (voice, text) pairs infer_cli 1.1.22's main() synthesizes, by its own splitting code."""
    source = INFER_CLI.read_text()
    assert 'reg1 = r"(?=\\[\\w+\\])"' in source and 'reg2 = r"\\[(\\w+)\\]"' in source, "infer_cli's tags changed"
    pairs = []
    for piece in re.split(r"(?=\[\w+\])", text):
        if not piece.strip():
            continue
        match = re.match(r"\[(\w+)\]", piece)
        voice = match[1] if match else "main"
        voice = voice if voice in voices | {"main"} else "main"
        pairs.append((voice, re.sub(r"\[(\w+)\]", "", piece).strip()))
    return pairs


def spoken(pieces: list[Spoken | Pause]) -> list[tuple[str, str]]:
    return [(p.voice, p.text) for p in pieces if isinstance(p, Spoken)]


def test_infer_cli_s_own_story_parses_into_the_voices_infer_cli_speaks() -> None:
    story = STORY.read_text()
    pieces = parse_script(story, ["town", "country"])
    assert spoken(pieces) == infer_cli_voices(story, {"town", "country"})
    assert [p.voice for p in pieces if isinstance(p, Spoken)] == ["main", "town", "main", "country", "main",
                                                                  "country"]
    assert all(isinstance(p, Spoken) for p in pieces)


def test_without_a_voices_table_tags_are_text() -> None:
    text = "  Footnote [1] and [sic], [town] too.  "
    assert parse_script(text, None) == [Spoken("main", text.strip())]
    assert parse_script("[town] hi", ["town"]) == [Spoken("town", "hi")]
    assert check_manifest(json.dumps(manifest(text)).encode(), "job").manifest.script == [  # type: ignore[union-attr]
        Spoken("main", text.strip())]


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda t: "<break" not in t and t.strip() != ""))
def test_a_text_without_breaks_or_table_is_one_main_piece(text: str) -> None:
    try:
        pieces = parse_script(text, None)
    except TextUnusable:
        return  # nothing speakable in it: refused as before
    assert pieces == [Spoken("main", text.strip())]


@pytest.mark.parametrize(("form", "seconds"), [
    ('<break time="500ms"/>', 0.5), ('<break time="1.5s"/>', 1.5), ("<break time='2s'/>", 2.0),
    ("<break time = '2s' />", 2.0), ("<break/>", 0.5), ("<break />", 0.5), ('<break\ttime="0s"/>', 0.0),
    ('<break time="10000ms"/>', 10.0), ('<break time=".25s"/>', 0.25),
])
def test_every_form_of_break_is_a_pause_that_splits_the_text(form: str, seconds: float) -> None:
    assert parse_script(f"One.{form}Two.", None) == [Spoken("main", "One."), Pause(seconds), Spoken("main", "Two.")]


@pytest.mark.parametrize("text", ["a <break> b", 'a <break time="1s"> b', 'a <break time="1"/> b',
                                  'a <break time="1m"/> b', 'a <break time="fast"/> b', 'a <break strength="x"/> b',
                                  'a <break time="1s\'/> b', "a <break / > b", "a <break/"])
def test_a_malformed_break_is_an_error_with_its_position_and_the_valid_forms(text: str) -> None:
    with pytest.raises(InvalidManifest) as err:
        parse_script(text, None)
    assert "malformed break" in str(err.value) and "at position 2" in str(err.value)
    assert '<break time="1.5s"/>' in str(err.value)


def test_other_tag_like_text_stays_text() -> None:
    text = "Eat <breakfast> in <b>bold</b>, <Break/>, <BREAK/> and <break"
    assert parse_script(text, None) == [Spoken("main", text)]


def test_a_break_over_ten_seconds_and_breaks_over_the_total_are_errors() -> None:
    with pytest.raises(InvalidManifest, match=r"longer than 10 s"):
        parse_script('a <break time="10.5s"/> b', None)
    many = int(MAX_PAUSES_S // MAX_BREAK_S) + 1
    with pytest.raises(InvalidManifest, match=r"add up to more than 600 s"):
        parse_script('a <break time="10s"/>' * many, None)


def test_the_voice_carries_on_after_a_break_and_adjacent_breaks_add_up() -> None:
    text = '<break/>[town] a <break/> b <break time="1s"/> <break time="250ms"/>[main][country]<break/> c <break/>'
    assert parse_script(text, ["town", "country"]) == [
        Pause(0.5), Spoken("town", "a"), Pause(0.5), Spoken("town", "b"), Pause(1.75), Spoken("country", "c"),
        Pause(0.5)]


def test_an_unknown_tag_names_the_tag_and_the_voices() -> None:
    with pytest.raises(InvalidManifest) as err:
        parse_script("Hi. [twon] there", ["town", "country"])
    assert str(err.value) == ("unknown voice tag [twon] at position 4 (counting characters from 0); the voices are "
                              "main, town, country: add 'twon' to \"voices\" or fix the tag")
    assert parse_script("[main] a", []) == [Spoken("main", "a")]


def test_nothing_to_speak_is_text_unusable_naming_the_voice_and_position() -> None:
    for text in ("<break/> <break/>", "[town] [main]", "[town]<break/>"):
        with pytest.raises(TextUnusable, match="only breaks and voice tags"):
            parse_script(text, ["town"])
    with pytest.raises(TextUnusable) as err:
        parse_script("Hello. [town] \u200b", ["town"])
    assert str(err.value).startswith("text in voice 'town' at position 7 has nothing to speak")


# --- in the manifest -------------------------------------------------------------------------------------------


def test_voice_specs_fill_a_voice_s_speed_and_silence_from_the_manifest() -> None:
    m = Manifest.model_validate(manifest("[town] hi [country] yo", speed=1.2, remove_silence=True, voices={
        "town": {"voice": "voices/town.flac", "speed": 0.8, "voice_text": "  "},
        "country": {"voice": "voices/country.flac", "remove_silence": False, "voice_language": "EN"}}))
    main = m.voice_specs()["main"]
    assert (main.voice, main.speed, main.remove_silence) == ("voices/narrator.wav", 1.2, True)
    assert m.voice_specs()["town"] == VoiceSpec("voices/town.flac", None, None, 0.8, True)
    assert m.voice_specs()["country"] == VoiceSpec("voices/country.flac", None, "en", 1.2, False)
    assert list(m.voice_specs()) == ["main", "town", "country"]
    assert spoken(m.script) == [("town", "hi"), ("country", "yo")]


def test_check_manifest_reports_script_problems_on_the_text_field() -> None:
    def problems(**fields: object) -> list[tuple[str, str, str]]:
        checked = check_manifest(json.dumps(manifest(**fields)).encode(), "job")  # type: ignore[arg-type]
        return [(p.code, p.field, str(p)) for p in checked.problems]

    [(code, field, said)] = problems(text="a [x] b", voices={"town": {"voice": "t.wav"}})
    assert (code, field) == ("invalid_manifest", "text") and said.startswith("text: unknown voice tag [x]")
    assert problems(text="a [x] b") == []
    [(code, field, _)] = problems(text="a <break time=2s/>")
    assert (code, field) == ("invalid_manifest", "text")
    [(code, field, _)] = problems(text="<break/>")
    assert (code, field) == ("text_unusable", "text")
    # a bad table is reported on its own field; the text's tags are not guessed at
    assert [p[1] for p in problems(text="[x] a", voices={"main": {"voice": "t.wav"}})] == ["voices.main"]


def test_the_reference_s_example_of_voices_and_pauses_is_what_it_says() -> None:
    page = (REPO / "docs" / "manifest.md").read_text()
    example = page.split("## Voices and pauses")[1].split("```json\n")[1].split("```")[0]
    checked = check_manifest(example.encode(), "story")
    assert checked.manifest is not None, checked.problems
    assert [p.voice if isinstance(p, Spoken) else p.seconds for p in checked.manifest.script] == [
        "main", "town", 1.0, "country", "main"]
