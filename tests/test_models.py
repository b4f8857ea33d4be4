"""The worker's loaded models: three tiny models on one volume (`tiny` and two fine-tunes of it, seeded through
`seed --from DIR --name NAME --arch ARCH`), loaded on first use, the least recently used unloaded first."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from prometheus_client.parser import text_string_to_metric_families

from processor.app import open_synthesizer
from processor.audio import VoicePrompt
from processor.errors import ModelNotFound
from processor.logs import JsonFormatter, logger
from processor.metrics import Metrics
from processor.models import Models, synthesizer_bytes
from processor.settings import Settings
from processor.storage.volume import Volume
from processor.synthesis import SynthesisRequest

from tests.support.paths import VOICE, VOICE_TEXT
from tests.support.volumes import add_finetune, make_tiny_volume

TEXT = "Two models, one worker."


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    volume = make_tiny_volume(tmp_path_factory.mktemp("models") / "volume", asr=False)
    add_finetune(volume, "tiny-de", seed=1)
    add_finetune(volume, "tiny-fr", seed=2)
    return volume


@pytest.fixture(scope="module")
def voice() -> VoicePrompt:
    samples, rate = sf.read(VOICE, dtype="float32", always_2d=True, frames=24000)  # its first second is enough here
    return VoicePrompt(samples=np.ascontiguousarray(samples.T), sample_rate=rate, text=VOICE_TEXT)


@pytest.fixture
def model_log() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines logged so far with `"stage": "model"`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [line for line in map(json.loads, stream.getvalue().splitlines()) if line["stage"] == "model"]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def settings(volume: Volume, max_models: int) -> Settings:
    return Settings(volume=volume.root, model="tiny", device="cpu", max_models=max_models)


def counts(metrics: Metrics) -> dict[tuple[str, str], float]:
    """{(sample name, model label or ""): value} of the model families."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name.startswith(("f5batch_model_", "f5batch_models_")) and not sample.name.endswith("_created"):
                found[(sample.name, sample.labels.get("model", ""))] = sample.value
    return found


def speak(synthesizer: object, voice: VoicePrompt) -> np.ndarray:
    return synthesizer.synthesize(SynthesisRequest(TEXT, voice, seed=7, nfe_step=2))  # type: ignore[attr-defined]


def test_two_models_stay_loaded_and_a_third_unloads_the_least_recently_used(
    volume: Volume, model_log: Callable[[], list[dict[str, Any]]]
) -> None:
    metrics = Metrics(model="tiny")
    models = Models(settings(volume, 2), volume, metrics=metrics)
    assert models.loaded == [] and models.default == "tiny"
    first = models.get("tiny")
    assert models.get("tiny-de") is not first
    assert models.get("tiny") is first, "a loaded model is not loaded again"
    assert models.loaded == ["tiny-de", "tiny"]
    models.get("tiny-fr")
    assert models.loaded == ["tiny", "tiny-fr"] and not models.is_loaded("tiny-de")
    assert counts(metrics) == {
        ("f5batch_model_loads_total", "tiny"): 1, ("f5batch_model_loads_total", "tiny-de"): 1,
        ("f5batch_model_loads_total", "tiny-fr"): 1, ("f5batch_model_unloads_total", "tiny"): 0,
        ("f5batch_model_unloads_total", "tiny-de"): 1, ("f5batch_models_loaded", ""): 2,
    }
    events = [(line["event"], line["model"], line["loaded"]) for line in model_log()]
    assert events == [("loaded", "tiny", ["tiny"]), ("loaded", "tiny-de", ["tiny", "tiny-de"]),
                      ("unloaded", "tiny-de", ["tiny"]), ("loaded", "tiny-fr", ["tiny", "tiny-fr"])]
    assert all(line["device"] == "cpu" and isinstance(line["seconds"], float) for line in model_log())


def test_one_model_at_a_time_swaps_and_each_speaks_as_it_does_alone(volume: Volume, voice: VoicePrompt) -> None:
    metrics = Metrics(model="tiny")
    models = Models(settings(volume, 1), volume, metrics=metrics)
    spoken = []
    for name in ("tiny", "tiny-de", "tiny"):
        spoken.append(speak(models.get(name), voice))
        assert models.loaded == [name]
    assert counts(metrics)[("f5batch_model_loads_total", "tiny")] == 2
    assert counts(metrics)[("f5batch_model_unloads_total", "tiny-de")] == 1
    assert counts(metrics)[("f5batch_models_loaded", "")] == 1
    # The first tiny was loaded alone; the fine-tune is loaded alone here, in a synthesizer Models never saw.
    assert np.array_equal(spoken[2], spoken[0]), "tiny again, after the fine-tune came and went"
    assert np.array_equal(spoken[1], speak(open_synthesizer(settings(volume, 1), "tiny-de"), voice))
    assert not np.array_equal(spoken[0], spoken[1]), "the fine-tune has its own weights"


def test_require_names_the_models_on_the_volume_without_loading(volume: Volume, tmp_path: Path) -> None:
    models = Models(settings(volume, 2), volume)
    assert models.require(None) == "tiny" and models.require("tiny-de") == "tiny-de"
    for name in ("tiny-it", "../models/tiny", ".staging-tiny"):
        with pytest.raises(ModelNotFound) as caught:
            models.require(name)
        assert caught.value.code == "model_not_found"
        assert "it has tiny, tiny-de, tiny-fr" in str(caught.value) and "f5-batch seed" in str(caught.value)
    with pytest.raises(ModelNotFound, match="--from DIR --name tiny-it --arch ARCH"):
        models.require("tiny-it")
    with pytest.raises(ModelNotFound, match="--model F5TTS_Base"):
        models.require("F5TTS_Base")
    assert models.loaded == []


def test_a_gpu_budget_unloads_by_bytes_and_a_model_over_it_loads_alone(volume: Volume) -> None:
    """The budget's arithmetic, with real synthesizers that say they are on a GPU (nothing is moved there)."""
    loaded = {name: open_synthesizer(settings(volume, 1), name) for name in ("tiny", "tiny-de", "tiny-fr")}
    size = synthesizer_bytes(loaded["tiny"])
    assert size > 0 and all(synthesizer_bytes(s) == size for s in loaded.values())
    for synthesizer in loaded.values():
        synthesizer.device = "cuda:0"

    models = Models(Settings(volume=volume.root, model="tiny", model_memory_bytes=2 * size, max_models=1),
                    volume, load=loaded.__getitem__)
    for name in ("tiny", "tiny-de", "tiny"):
        models.get(name)
    assert models.loaded == ["tiny-de", "tiny"], "two fit in the budget, whatever F5B_MAX_MODELS says"
    models.get("tiny-fr")
    assert models.loaded == ["tiny", "tiny-fr"]

    small = Models(Settings(volume=volume.root, model="tiny", model_memory_bytes=size // 2), volume,
                   load=loaded.__getitem__)
    small.get("tiny")
    assert small.loaded == ["tiny"], "a model larger than the budget still loads, alone"
    small.get("tiny-de")
    assert small.loaded == ["tiny-de"]
    assert torch.cuda.is_available() or small.budget_bytes == size // 2
