"""Where each text chunk falls in the final audio: `segments` in result.json, measured from the join's samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.app import build_worker
from processor.audio import remove_silence
from processor.rendering import chunk_bounds
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.paths import VOICE_TEXT
from tests.support.results import all_results
from tests.support.workers import local_settings

RATE = 24000
# Three sentences of about 150 characters: a chunk each in the example voice (205 bytes a chunk).
SENTENCES = (  # no commas: F5-TTS's chunking also cuts at them
    "The first sentence of this text is long enough to fill most of one chunk so that it stands alone here with "
    "no other sentence beside it.",
    "The second sentence is just as long and it too is given a chunk of its own by the text splitter as the "
    "first one was before it.",
    "The third and last sentence closes the text and the timeline finds it as a chunk of its own exactly like "
    "the two sentences before it.",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("timeline")
    inbox = inbox_with_voice(root)
    write_manifest(inbox, "faded", manifest(" ".join(SENTENCES), nfe_step=2, seed=1, subtitles=["srt", "vtt"]))
    write_manifest(inbox, "butted", manifest(" ".join(SENTENCES), nfe_step=2, seed=1, cross_fade=0))
    write_manifest(inbox, "paused", manifest(' <break time="400ms"/> '.join(SENTENCES), nfe_step=2, seed=1,
                                             cross_fade=0))
    for n, sentence in enumerate(SENTENCES):
        write_manifest(inbox, f"alone-{n}", manifest(sentence, nfe_step=2, seed=1))
    write_manifest(inbox, "voiced", manifest("The narrator speaks. [town] The town answers.", nfe_step=2,
                                             voices={"town": {"voice": "voices/narrator.wav", "speed": 1.2,
                                                                "voice_text": VOICE_TEXT}}))
    assert build_worker(local_settings(root, tiny_volume)).run(once=True) == 7
    return {"outbox": root / "outbox", "results": all_results(root / "outbox")}


def segments(run: dict[str, Any], job: str) -> list[dict[str, Any]]:
    result = run["results"][job]
    assert result["status"] == "succeeded", result["error"]
    found: list[dict[str, Any]] = result["segments"]
    return found


@pytest.mark.parametrize("job", ["faded", "butted"])
def test_three_chunks_meet_end_to_start_and_end_with_the_audio(run: dict[str, Any], job: str) -> None:
    found = segments(run, job)
    assert [s["text"] for s in found] == list(SENTENCES)
    assert found[0]["start"] == 0.0
    assert all(a["end"] == b["start"] for a, b in zip(found, found[1:], strict=False))
    samples, rate = sf.read(run["outbox"] / job / "audio.wav", dtype="int16")
    assert abs(found[-1]["end"] - len(samples) / rate) <= 1 / rate
    assert all(s["voice"] is None for s in found), "one voice: no voice field"


def test_without_a_cross_fade_the_boundaries_are_the_chunks_own_lengths(run: dict[str, Any]) -> None:
    """Each chunk synthesized alone has the length it has in the three-chunk job: the boundaries are the sums."""
    lengths = [len(sf.read(run["outbox"] / f"alone-{n}" / "audio.wav", dtype="int16")[0]) for n in range(3)]
    ends = [s["end"] for s in segments(run, "butted")]
    assert ends == pytest.approx([sum(lengths[: n + 1]) / RATE for n in range(3)], abs=1 / RATE)


def test_on_the_audio_a_pause_between_chunks_sits_at_their_boundary(run: dict[str, Any]) -> None:
    found = segments(run, "paused")
    samples, _ = sf.read(run["outbox"] / "paused" / "audio.wav", dtype="int16")
    silent = np.flatnonzero(samples == 0)
    runs = [r for r in np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1) if len(r) > 0.3 * RATE]
    assert len(runs) == 2, [len(r) / RATE for r in runs]
    for pause, before, after in zip(runs, found[:-1], found[1:], strict=True):
        assert abs(before["end"] - pause[0] / RATE) <= 0.02 and abs(after["start"] - (pause[-1] + 1) / RATE) <= 0.02
    assert found[0]["end"] < found[1]["start"], "a pause belongs to neither chunk"


def test_several_voices_name_the_voice_of_each_chunk(run: dict[str, Any]) -> None:
    found = segments(run, "voiced")
    assert [(s["voice"], s["text"]) for s in found] == [("main", "The narrator speaks."),
                                                       ("town", "The town answers.")]
    assert found[0]["end"] == found[1]["start"]


def test_chunk_bounds_put_each_boundary_at_the_fade_s_midpoint() -> None:
    rate = 1000
    assert chunk_bounds([500, 400, 300], 0.0, rate) == [0, 500, 900, 1200]
    assert chunk_bounds([500, 400, 300], 0.1, rate) == [0, 450, 750, 1000]  # fades of 100: 500-100+50, ...
    assert chunk_bounds([500, 40], 0.1, rate) == [0, 480, 500], "a fade no longer than the chunk after it"


def test_removed_silence_moves_the_positions_after_it(tmp_path: Path) -> None:
    rate = RATE
    tone = (0.3 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)).astype(np.float32)
    wave = np.concatenate([tone, np.zeros(3 * rate, dtype=np.float32), tone])
    kept_wave, kept = remove_silence(wave, rate, tmp_path)
    assert kept.spans, "pydub's own cut was reproduced"
    removed = len(wave) - len(kept_wave)
    assert 1.9 * rate < removed < 2.1 * rate  # 3 s of silence less the 0.5 s kept on each side
    assert kept.map(rate // 2) == rate // 2, "before the silence nothing moves"
    second = len(wave) - rate
    assert kept.map(second) == second - removed, "after it, by what was cut"
    assert kept.map(len(wave)) == len(kept_wave)
    assert np.abs(kept_wave[kept.map(second):kept.map(second) + 100]).max() > 0.1, "the tone is where it maps"


def test_subtitles_parse_cover_the_audio_and_keep_their_lines_short(run: dict[str, Any]) -> None:
    import srt
    import webvtt

    result = run["results"]["faded"]
    assert result["subtitles"] == ["faded/audio.srt", "faded/audio.vtt"]
    srt_cues = list(srt.parse((run["outbox"] / "faded" / "audio.srt").read_text()))
    vtt_cues = list(webvtt.from_string((run["outbox"] / "faded" / "audio.vtt").read_text()))
    assert len(srt_cues) == len(vtt_cues) > 3, "each 130-character chunk is split into cues of two lines"
    assert srt_cues[0].start.total_seconds() == 0.0
    assert abs(srt_cues[-1].end.total_seconds() - result["duration_s"]) <= 0.001
    for cue in srt_cues:
        lines = cue.content.splitlines()
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), cue.content
    assert " ".join(" ".join(c.content.split()) for c in srt_cues) == " ".join(SENTENCES)
    assert run["results"]["butted"]["subtitles"] is None, "none asked, none written"
