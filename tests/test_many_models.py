"""Several models in one worker: a manifest's model, batches of one model each, and a mixed queue without thrash.

Two tiny models with different random weights on one volume (`tiny`, and `tiny-b` seeded as a fine-tune of it),
twenty manifests alternating between them.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_worker
from processor.pipeline import SWAP_AFTER, Pipeline, Prefetch, Stages
from processor.shutdown import Shutdown
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.results import all_results
from tests.support.volumes import add_finetune
from tests.support.workers import local_settings

JOBS = 20
MODELS = ("tiny", "tiny-b")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Volume:
    volume = Volume(tmp_path_factory.mktemp("two-models") / "volume")
    shutil.copytree(tiny_volume.root, volume.root)
    add_finetune(volume, "tiny-b", seed=7)
    return volume


def model_of(n: int) -> str:
    return MODELS[n % 2]


def run_jobs(root: Path, volume: Volume, jobs: list[int], **settings: Any) -> tuple[dict[str, Any], Any]:
    inbox = inbox_with_voice(root)
    for n in jobs:
        write_manifest(inbox, f"job-{n:02d}", manifest(f"Job number {n} speaks.", nfe_step=2, model=model_of(n)))
    worker = build_worker(local_settings(root, volume, **settings))
    assert worker.run(once=True) == len(jobs)
    return all_results(root / "outbox"), worker.metrics


def loads(metrics: Any) -> dict[str, float]:
    return {m: metrics.registry.get_sample_value("f5batch_model_loads_total", {"model": m}) or 0.0 for m in MODELS}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, two_models: Volume) -> dict[str, Any]:
    """The twenty jobs with two models kept loaded, with one, and each model's jobs alone on a worker of its own."""
    runs = {}
    for name, limit in (("two", 2), ("one", 1)):
        runs[name] = run_jobs(tmp_path_factory.mktemp(f"mixed-{name}"), two_models, list(range(JOBS)),
                              max_models=limit)
    for model in MODELS:
        mine = [n for n in range(JOBS) if model_of(n) == model]
        runs[model] = run_jobs(tmp_path_factory.mktemp(f"alone-{model}"), two_models, mine, model=model)
    return {name: {"results": results, "loads": loads(metrics), "root": Path(results[next(iter(results))]
                                                                               ["audio_uri"]).parents[1]}
            for name, (results, metrics) in runs.items()}


def audio(run: dict[str, Any], job: str) -> bytes:
    return (run["root"] / job / "audio.wav").read_bytes()


@pytest.mark.parametrize("limit", ["two", "one"])
def test_every_job_s_audio_equals_its_model_s_run_alone(mixed: dict[str, Any], limit: str) -> None:
    for n in range(JOBS):
        job = f"job-{n:02d}"
        result = mixed[limit]["results"][job]
        assert result["status"] == "succeeded" and result["model"] == model_of(n), result
        assert audio(mixed[limit], job) == audio(mixed[model_of(n)], job), job
    assert audio(mixed[limit], "job-00") != audio(mixed[limit], "job-02"), "the comparison can tell jobs apart"


def test_two_models_kept_loaded_load_once_each(mixed: dict[str, Any]) -> None:
    assert mixed["two"]["loads"] == {"tiny": 1, "tiny-b": 1}


def test_one_model_at_a_time_swaps_fewer_times_than_there_are_jobs(mixed: dict[str, Any]) -> None:
    swaps = sum(mixed["one"]["loads"].values()) - 1
    assert swaps < JOBS // 2, f"{swaps} swaps for {JOBS} jobs alternating between two models"


def test_batches_never_mix_models_and_no_job_waits_past_the_swap_bound() -> None:
    """The pipeline alone: jobs alternate between models, one model loaded at a time (a batch of another swaps it
    in); the oldest job waits behind at most SWAP_AFTER batches of the loaded model."""
    loaded = ["a"]
    calls: list[list[tuple[int, str]]] = []
    claimed = threading.Event()
    order = [(n, "a" if n % 3 else "b") for n in range(18)]

    def claim() -> list[tuple[int, str]]:
        if claimed.is_set():
            return []
        claimed.set()
        return order

    def life(job: tuple[int, str]) -> Generator[tuple[int, str], Any, str]:
        yield job
        return "done"

    def synthesize(requests: list[tuple[int, str]]) -> list[str]:
        calls.append(requests)
        loaded[0] = requests[0][1]
        time.sleep(0.01)
        return ["ok"] * len(requests)

    stages = Stages(claim=claim, live=life, synthesize=synthesize, end=lambda job, outcome: None,
                    put_back=lambda job: None, model_of=lambda request: request[1],
                    loaded=lambda model: model == loaded[0])
    Pipeline(stages, Shutdown(grace_s=0), Prefetch(max_batch=2, ahead=20, lease_s=300), 0.0).run()

    assert sorted(n for call in calls for n, _ in call) == list(range(18))
    assert all(len({model for _, model in call}) == 1 for call in calls), calls
    swaps = sum(1 for before, after in zip(calls, calls[1:], strict=False) if before[0][1] != after[0][1])
    assert swaps < 6, calls  # in claim order, a batch of two would swap at nearly every call
    served: set[int] = set()
    passed = 0
    for call in calls:  # every job was ready from the first call on (one claim, prefetch room for all)
        oldest = min(n for n, _ in order if n not in served)
        passed = 0 if oldest in {n for n, _ in call} else passed + 1
        assert passed <= SWAP_AFTER, calls
        served |= {n for n, _ in call}
