"""The example jobs published at a loudness target: measured on the files the worker wrote, as a platform would."""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.app import build_worker
from processor.loudness import integrated_lufs, true_peak_dbtp
from processor.storage.volume import Volume

from tests.support.paths import REPO
from tests.support.results import all_results
from tests.support.workers import local_settings

EXAMPLES = REPO / "manifests" / "examples"
THREE = {"hello": "hello.json", "chapter-1": "chapter-flac.json", "draft-0001": "fast-draft.json"}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> dict[str, Any]:
    """The three plain examples twice: as they are, and with "loudness": -16."""
    runs = {}
    for name, extra in (("plain", {}), ("loud", {"loudness": -16})):
        root = tmp_path_factory.mktemp(f"publish-{name}")
        shutil.copytree(EXAMPLES / "voices", root / "inbox" / "voices")
        for file in THREE.values():
            data = json.loads((EXAMPLES / file).read_text())
            (root / "inbox" / file).write_text(json.dumps({**data, **extra, "nfe_step": 4}))
        assert build_worker(local_settings(root, tiny_volume)).run(once=True) == 3
        runs[name] = {"outbox": root / "outbox", "results": all_results(root / "outbox")}
    return runs


def decoded(run: dict[str, Any], job: str) -> tuple[np.ndarray, int]:
    result = run["results"][job]
    assert result["status"] == "succeeded", result["error"]
    samples, rate = sf.read(run["outbox"] / result["audio"], dtype="float32")
    return samples, rate


@pytest.mark.parametrize("job", THREE)
def test_an_example_at_minus_16_lufs_measures_minus_16_and_peaks_under_the_ceiling(published: dict[str, Any],
                                                                                   job: str) -> None:
    samples, rate = decoded(published["loud"], job)
    assert integrated_lufs(samples, rate) == pytest.approx(-16.0, abs=0.5)
    assert true_peak_dbtp(samples, rate) <= -1.0 + 0.1  # an mp3's decoder may add a little; the wav/flac none
    assert np.abs(samples).max() < 1.0, "nothing clips"
    report = published["loud"]["results"][job]["loudness"]
    assert report["target_lufs"] == -16 and report["true_peak_ceiling_db"] == -1 and not report["limited_by_ceiling"]


def test_without_the_field_the_audio_is_as_made(published: dict[str, Any]) -> None:
    plain = published["plain"]["results"]["hello"]
    assert plain["loudness"] is None
    ours, _ = decoded(published["plain"], "hello")
    louder, _ = decoded(published["loud"], "hello")
    gain = 10 ** (published["loud"]["results"]["hello"]["loudness"]["gain_db"] / 20)
    assert len(ours) == len(louder) and gain > 1.5
    assert np.abs(ours * gain - louder).max() < 2 / 32768 * gain, "the same samples, one gain apart"


def test_the_files_say_what_made_them(published: dict[str, Any]) -> None:
    encodings = {job: published["loud"]["results"][job]["encoding"] for job in THREE}
    assert {e["codec"] for e in encodings.values()} == {"pcm_s16le", "flac", "mp3"}
    assert all(e["encoder"].startswith("libsndfile") and e["sample_rate"] == 24000 for e in encodings.values())
