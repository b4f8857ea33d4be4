"""The model volume: layout, caches on the volume, and loading that refuses broken folders."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from processor.errors import ModelError
from processor.model import load_model
from processor.storage import volume as volume_module
from processor.storage.volume import ModelFolder, Volume


def test_default_volume_is_the_runpod_mount_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volume_module, "RUNPOD_VOLUME", tmp_path / "runpod-volume")
    assert volume_module.default_volume() == Path("volume")
    (tmp_path / "runpod-volume").mkdir()
    assert volume_module.default_volume() == tmp_path / "runpod-volume"


def test_caches_point_at_the_volume_and_the_hub_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    Volume(tmp_path).apply_cache_environment()
    for name in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME"):
        assert Path(os.environ[name]).is_relative_to(tmp_path.resolve()), name
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_checksums_catch_a_changed_file(tiny_model: ModelFolder, tmp_path: Path) -> None:
    copy = ModelFolder(tmp_path / "tiny")
    shutil.copytree(tiny_model.path, copy.path)
    assert copy.is_complete() and copy.checksum_mismatches() == []
    with copy.vocab.open("a") as f:
        f.write("extra\n")
    assert copy.checksum_mismatches() == ["vocab.txt"] and not copy.is_complete()


def test_garbled_checksums_file_verifies_nothing(tiny_model: ModelFolder, tmp_path: Path) -> None:
    copy = ModelFolder(tmp_path / "tiny")
    shutil.copytree(tiny_model.path, copy.path)
    copy.checksums_file.write_text("not-a-valid-line\n")
    assert len(copy.checksum_mismatches()) == 5


def test_loading_an_incomplete_folder_says_how_to_seed(tmp_path: Path) -> None:
    hint = f"seed it with: f5-batch seed --volume {tmp_path} --model F5TTS_v1_Base"
    with pytest.raises(ModelError, match=re.escape(hint)):
        load_model(Volume(tmp_path).model("F5TTS_v1_Base"), "cpu")


def test_loading_weights_that_do_not_fit_the_config_fails_clearly(tiny_model: ModelFolder, tmp_path: Path) -> None:
    copy = ModelFolder(tmp_path / "tiny")
    shutil.copytree(tiny_model.path, copy.path)
    config = copy.config()
    config["arch"]["dim"] = 96
    copy.config_file.write_text(json.dumps(config))
    with pytest.raises(ModelError, match="do not match config.json"):
        load_model(copy, "cpu")


def test_cuda_requested_without_a_gpu_is_an_error(tiny_model: ModelFolder) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="no CUDA device"):
        load_model(tiny_model, "cuda")


def test_tiny_model_loads_on_cpu_in_fp32(tiny_model: ModelFolder) -> None:
    import torch
    from f5_tts.model.cfm import CFM

    loaded = load_model(tiny_model, "auto" if not torch.cuda.is_available() else "cpu")
    assert isinstance(loaded.cfm, CFM)
    assert loaded.device == "cpu" and loaded.dtype == torch.float32
    assert (loaded.sample_rate, loaded.hop_length, loaded.random_weights) == (24000, 256, True)
    assert not any(p.requires_grad and p.grad is not None for p in loaded.cfm.parameters())
