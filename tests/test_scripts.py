"""Scripts through the worker: several voices, pauses and bad scripts in one run, each job ending on its own.

F5-TTS's own multi-voice example (its story.txt and three flac voices, as infer_cli reads story.toml) is converted
to one manifest: no transcripts, as story.toml has none, so the tiny ASR model transcribes each voice.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.app import build_worker
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.results import all_results
from tests.support.workers import local_settings

RATE = 24000
FRAME = 256  # the model's hop: the tolerance the issue gives a pause


def f5_tts_multi() -> Path:
    import f5_tts

    return Path(next(iter(f5_tts.__path__))) / "infer" / "examples" / "multi"


def infer_cli_voices(text: str) -> list[str]:
    """The voice of each piece, as F5-TTS 1.1.22's infer_cli.main picks them (its regexes, its skipping)."""
    voices = []
    for piece in re.split(r"(?=\[\w+\])", text):
        if not piece.strip():
            continue
        match = re.match(r"\[(\w+)\]", piece)
        voices.append(match[1] if match else "main")
    return voices


def events(outbox: Path, job: str, stage: str) -> list[dict[str, Any]]:
    lines = (outbox / job / "log.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["stage"] == stage]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("scripts")
    inbox = inbox_with_voice(root)
    multi = f5_tts_multi()
    for name in ("main", "town", "country"):
        shutil.copy(multi / f"{name}.flac", inbox / "voices" / f"{name}.flac")
    story = (multi / "story.txt").read_text().strip()
    write_manifest(inbox, "story", {"text": story, "voice": "voices/main.flac", "nfe_step": 2, "seed": 3,
                                    "remove_silence": True,
                                    "voices": {"town": {"voice": "voices/town.flac", "speed": 0.8},
                                               "country": {"voice": "voices/country.flac"}}})
    write_manifest(inbox, "pause", manifest('One sentence here. <break time="1.5s"/> And another one after it.',
                                            nfe_step=2))
    write_manifest(inbox, "plain-1", manifest("A plain job in the same batch.", nfe_step=2))
    write_manifest(inbox, "unknown-tag", manifest("[town] Hello. [nobody] There.", nfe_step=2,
                                                  voices={"town": {"voice": "voices/narrator.wav"}}))
    write_manifest(inbox, "malformed-break", manifest('Wait <break time="fast"/> here.', nfe_step=2))
    write_manifest(inbox, "unknown-model", manifest("Which model?", nfe_step=2, model="F5TTS_v9"))
    write_manifest(inbox, "plain-2", manifest("Another plain job.", nfe_step=2))
    worker = build_worker(local_settings(root, tiny_volume, asr_model="tiny", max_batch=4, prefetch=6))
    assert worker.run(once=True) == 7
    return {"outbox": root / "outbox", "results": all_results(root / "outbox"), "story": story}


def test_f5_tts_s_own_story_speaks_each_piece_in_infer_cli_s_voice_in_order(run: dict[str, Any]) -> None:
    result = run["results"]["story"]
    assert result["status"] == "succeeded", result["error"]
    assert result["voice_text_source"] == "asr" and result["voices"]["town"]["voice_text_source"] == "asr"
    segments = events(run["outbox"], "story", "segment")
    assert [s["voice"] for s in segments] == infer_cli_voices(run["story"]) == [
        "main", "town", "main", "country", "main", "country"]
    starts = [s["start_s"] for s in segments]
    assert starts == sorted(starts) and starts[0] == 0.0
    ends = [s["start_s"] + s["seconds"] for s in segments]
    assert all(abs(end - start) <= 0.15 + 1e-3 for end, start in zip(ends, starts[1:], strict=False)), \
        "each piece starts where the one before ends, less the cross-fade"
    assert abs(ends[-1] - result["duration_s"]) < 1e-3
    fetched = {e["voice_name"] for e in events(run["outbox"], "story", "fetched")}
    assert fetched == {"main", "town", "country"}


def test_a_break_is_exact_digital_silence_of_its_length_where_it_stands(run: dict[str, Any]) -> None:
    result = run["results"]["pause"]
    assert result["status"] == "succeeded", result["error"]
    samples, rate = sf.read(run["outbox"] / result["audio"], dtype="int16")
    assert rate == RATE
    silent = np.flatnonzero(samples == 0)
    runs = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
    longest = max(runs, key=len)
    assert abs(len(longest) - 1.5 * RATE) <= FRAME, len(longest) / RATE
    segments = events(run["outbox"], "pause", "segment")
    first_end = round((segments[0]["start_s"] + segments[0]["seconds"]) * RATE)
    assert abs(longest[0] - first_end) <= FRAME and abs(segments[1]["start_s"] * RATE - longest[-1]) <= FRAME
    assert np.abs(samples[: longest[0]]).max() > 0 and np.abs(samples[longest[-1] + 1:]).max() > 0


@pytest.mark.parametrize(("job", "code", "said"), [
    ("unknown-tag", "invalid_manifest", "nobody"),
    ("malformed-break", "invalid_manifest", "break"),
    ("unknown-model", "model_not_found", "tiny"),
])
def test_a_bad_script_or_model_fails_alone_naming_what_is_wrong(run: dict[str, Any], job: str, code: str,
                                                                 said: str) -> None:
    result = run["results"][job]
    assert result["status"] == "failed" and result["error"]["code"] == code, result["error"]
    assert said in result["error"]["message"]
    assert all(run["results"][ok]["status"] == "succeeded" for ok in ("plain-1", "plain-2", "story", "pause"))
