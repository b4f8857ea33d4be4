"""The listening check: the tiny Whisper hears each text chunk of a job's speech; retakes, their seeds, the report.

The tiny ASR model has random weights, so it hears gibberish: every chunk scores a WER of about 1. That makes
`max_wer: 0` fail every chunk in every take and `max_wer: 1e9` pass every one, which is what these tests need: the
mechanism (which chunks are synthesized again, with which seeds, through which batching, what is kept and said),
not a real Whisper's accuracy, which only a real checkpoint can show (bench/listening.py takes one).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_worker
from processor.pipeline import Pipeline, Prefetch, Stages
from processor.scoring import Scorer, language_code, metric_for
from processor.shutdown import Shutdown
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.results import all_results
from tests.support.workers import local_settings

ATTEMPTS = 3  # not the default (2): the takes heard are the setting's
SEED = 1234
# Three sentences of about 150 characters: each its own chunk in the example voice (205 bytes a chunk).
THREE_CHUNKS = (
    "The first sentence of this text is long enough to fill most of one chunk, so that it stands alone here, with "
    "no other sentence beside it. "
    "The second sentence is just as long, and it too is given a chunk of its own by the text splitter, as the "
    "first one was before it. "
    "The third and last sentence closes the text, and the check hears it as a chunk of its own, exactly like the "
    "two sentences before it."
)


# --- scoring -----------------------------------------------------------------------------------------------------

def test_scores_are_taken_on_text_normalised_as_whisper_normalises_it() -> None:
    scorer = Scorer()
    same = scorer.errors("Hello, Mr. Smith! It's twenty past two.", "hello mister smith it is twenty past two", "en")
    assert (same.wer, same.cer) == (0.0, 0.0), "case, punctuation, abbreviations and contractions are not errors"
    one = scorer.errors("The quick brown fox jumps.", "the quick brown box jumps", None)
    assert one.wer == pytest.approx(1 / 5) and 0 < one.cer < one.wer
    assert scorer.errors("Hello there.", "", "en").wer == 1.0, "nothing heard: every word deleted"
    assert scorer.errors("Hello there.", "hello there hello there", "en").wer == 1.0, "insertions count"


def test_languages_written_without_spaces_are_scored_by_characters() -> None:
    assert metric_for("今天天气很好，我们去公园散步吧。", None) == "cer"
    assert metric_for("The weather is fine today.", None) == "wer"
    assert metric_for("Any text at all.", "ja") == "cer" and metric_for("今天", "en") == "wer"
    assert language_code("english") == "en" and language_code("mandarin") == "zh" and language_code(None) is None
    errors = Scorer().errors("今天天气很好。", "今天天气不好", "zh")
    assert errors.cer == pytest.approx(1 / 6)


# --- the pipeline: a life that yields again --------------------------------------------------------------------

def test_a_retake_joins_the_ready_requests_of_other_jobs_in_one_synthesis_call() -> None:
    """Each life yields its first request, then a retake once resumed: every retake is served, and retakes share
    calls with other jobs' requests, as the listening check's do."""
    calls: list[list[tuple[str, int]]] = []
    claimed = threading.Event()
    ended: dict[str, tuple[str, str]] = {}

    def claim() -> list[str]:
        if claimed.is_set():
            return []
        claimed.set()
        return ["a", "b", "c", "d", "e", "f"]

    def life(job: str) -> Generator[tuple[str, int], str, tuple[str, str]]:
        first = yield (job, 1)
        again = yield (job, 2)
        return first, again

    def synthesize(requests: list[tuple[str, int]]) -> list[str]:
        calls.append(requests)
        time.sleep(0.2)  # a synthesis call: meanwhile the output thread resumes lives and queues their retakes
        return [f"{job}{take}" for job, take in requests]

    def end(job: str, outcome: tuple[str, str]) -> None:
        ended[job] = outcome

    stages = Stages(claim=claim, live=life, synthesize=synthesize, end=end, put_back=lambda job: None)
    Pipeline(stages, Shutdown(grace_s=0), Prefetch(max_batch=3, ahead=6, lease_s=300), 0.0).run()

    assert ended == {job: (f"{job}1", f"{job}2") for job in "abcdef"}, "every retake was synthesized and delivered"
    mixed = [call for call in calls if any(take == 2 for _, take in call) and len({job for job, _ in call}) > 1]
    assert mixed, f"no call batched a retake with another job's request: {calls}"
    assert len(calls) < 12, "requests shared calls"


# --- the worker ---------------------------------------------------------------------------------------------------

def checked(text: str, **fields: Any) -> dict[str, Any]:
    return manifest(text, nfe_step=2, seed=SEED, **fields)


def takes_in_log(outbox: Path, job: str) -> list[dict[str, Any]]:
    lines = (outbox / job / "log.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["stage"] == "checked"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> dict[str, Any]:
    """Three in-process worker runs on one inbox:
    1. the tiny ASR, F5B_CHECK_ATTEMPTS 3: a check that only measures, one that always passes, one that always
       fails, and one that keeps the best takes of a failing check;
    2. the same worker again (F5B_CHECK on for every job) into a fresh outbox: the kept job again, a manifest
       that says nothing of the check, and one that opts out;
    3. no ASR model: a manifest that asks for the check, with a voice that does not exist."""
    root = tmp_path_factory.mktemp("listening")
    inbox = inbox_with_voice(root)
    write_manifest(inbox, "measured", checked("Hello there. This is a check that only measures.", check=True))
    write_manifest(inbox, "lenient", checked(THREE_CHUNKS, max_wer=1e9))
    write_manifest(inbox, "strict", checked(THREE_CHUNKS, max_wer=0))
    kept = checked("A short line the check hears twice.", max_wer=0, on_check_fail="keep")
    write_manifest(inbox, "kept", kept)
    first = build_worker(local_settings(root, tiny_volume, asr_model="tiny", check_attempts=ATTEMPTS))
    assert first.run(once=True) == 4

    again_inbox = inbox_with_voice(root / "again")
    write_manifest(again_inbox, "kept", kept)
    write_manifest(again_inbox, "plain", checked("Nothing is said of the check here."))
    write_manifest(again_inbox, "opted-out", checked("This one says no.", check=False))
    second = build_worker(local_settings(root, tiny_volume, asr_model="tiny", check=True, check_attempts=ATTEMPTS,
                                         inbox=str(again_inbox), outbox=str(root / "outbox-again"),
                                         processing_dir=root / "processing-again"))
    assert second.run(once=True) == 3

    bare_inbox = root / "bare" / "inbox"
    write_manifest(bare_inbox, "wants-check", checked("Hello.", voice="voices/missing.wav", check=True))
    third = build_worker(local_settings(root, tiny_volume, inbox=str(bare_inbox), outbox=str(root / "outbox-bare"),
                                        processing_dir=root / "processing-bare"))
    assert third.transcriber is None and third.run(once=True) == 1
    heard = {verdict: first.metrics.registry.get_sample_value("f5batch_check_takes_total", {"verdict": verdict})
             for verdict in ("within", "over")}
    return {"root": root, "heard": heard, "first": all_results(root / "outbox"),
            "again": all_results(root / "outbox-again"),
            "bare": all_results(root / "outbox-bare")}


def test_a_check_without_max_wer_measures_and_judges_nothing(runs: dict[str, Any]) -> None:
    result = runs["first"]["measured"]
    assert result["status"] == "succeeded"
    check = result["check"]
    assert check["passed"] is None and check["max_wer"] is None and check["retaken"] == 0
    assert check["chunks"] == 1 and check["asr_model"] == "tiny" and check["metric"] == "wer"
    assert check["transcript"] and check["transcript"] == check["worst_chunk"]["transcript"]
    assert result["timings"]["asr"] > 0, "the check's transcription is the asr stage"


def test_max_wer_1e9_always_passes_at_the_first_take(runs: dict[str, Any]) -> None:
    result = runs["first"]["lenient"]
    assert result["status"] == "succeeded" and result["check"]["passed"] is True
    assert result["check"]["chunks"] == 3 and result["check"]["retaken"] == 0
    takes = takes_in_log(runs["root"] / "outbox", "lenient")
    assert [(t["chunk"], t["take"], t["seed"], t["passed"]) for t in takes] == [(i, 1, SEED, True) for i in range(3)]


def test_max_wer_0_fails_after_exactly_the_allowed_takes_of_each_chunk_each_with_its_own_seed(
        runs: dict[str, Any]) -> None:
    result = runs["first"]["strict"]
    assert result["status"] == "failed" and result["error"]["code"] == "check_failed"
    message = result["error"]["message"]
    assert "3 of 3 text chunk(s) stayed over max_wer 0" in message and f"after {ATTEMPTS} take(s)" in message
    assert "on_check_fail" in message, "the message names the way to keep the best takes"
    assert result["check"]["passed"] is False and result["check"]["retaken"] == 3, "the failed result keeps the check"
    takes = takes_in_log(runs["root"] / "outbox", "strict")
    for chunk in range(3):
        own = [t for t in takes if t["chunk"] == chunk]
        assert [(t["take"], t["seed"]) for t in own] == [(n, SEED + n - 1) for n in range(1, ATTEMPTS + 1)], own
        assert all(t["passed"] is False and t["wer"] > 0 for t in own)
    assert not (runs["root"] / "outbox" / "strict" / "audio.wav").exists(), "a failed check writes no audio"


def test_on_check_fail_keep_keeps_the_best_takes_and_says_it_did_not_pass(runs: dict[str, Any]) -> None:
    result = runs["first"]["kept"]
    assert result["status"] == "succeeded" and result["check"]["passed"] is False
    worst = result["check"]["worst_chunk"]
    takes = takes_in_log(runs["root"] / "outbox", "kept")
    assert len(takes) == ATTEMPTS and worst["takes"] == ATTEMPTS
    best = min(takes, key=lambda t: (t["wer"], t["cer"]))
    assert (worst["seed"], worst["wer"]) == (best["seed"], best["wer"]), "the kept take is the best one heard"


def test_a_rerun_of_the_same_manifest_gives_byte_identical_audio(runs: dict[str, Any]) -> None:
    root = runs["root"]
    assert runs["again"]["kept"]["check"] == runs["first"]["kept"]["check"]
    assert (root / "outbox-again" / "kept" / "audio.wav").read_bytes() == (root / "outbox" / "kept" /
                                                                             "audio.wav").read_bytes()


def test_f5b_check_checks_every_job_unless_its_manifest_says_no(runs: dict[str, Any]) -> None:
    assert runs["again"]["plain"]["status"] == "succeeded" and runs["again"]["plain"]["check"]["passed"] is None
    assert runs["again"]["opted-out"]["status"] == "succeeded" and runs["again"]["opted-out"]["check"] is None


def test_a_check_without_an_asr_model_fails_before_the_voice_is_fetched(runs: dict[str, Any]) -> None:
    result = runs["bare"]["wants-check"]
    assert result["error"]["code"] == "check_unavailable", result["error"]
    assert "f5-batch seed" in result["error"]["message"] and result["timings"]["fetch"] == 0


def test_the_metrics_count_every_take_heard_by_verdict(runs: dict[str, Any]) -> None:
    # measured 1 chunk + lenient 3 within; strict 3 chunks x 3 takes + kept 1 chunk x 3 takes over
    assert runs["heard"] == {"within": 4, "over": 12}
