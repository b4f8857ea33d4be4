"""`f5-batch seed --from DIR --name NAME --arch ARCH`: a fine-tune's checkpoint becomes a verified model folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from processor.checks import Context
from processor.doctor import run_checks
from processor.seeding.cli import main
from processor.settings import Settings
from processor.storage.volume import ModelFolder, Volume

from tests.support.volumes import make_tiny_volume, write_finetune


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> ModelFolder:
    return make_tiny_volume(tmp_path_factory.mktemp("base") / "volume", asr=False).model("tiny")


def volume_with_tiny(tmp_path: Path, base: ModelFolder) -> Volume:
    volume = Volume(tmp_path / "volume")
    shutil.copytree(base.path, volume.model("tiny").path)
    return volume


def seed_finetune(volume: Volume, source: Path, *extra: str) -> int:
    return main(["--volume", str(volume.root), "--from", str(source), "--name", "tiny-de", "--arch", "F5TTS_v1_Base",
                 "--vocoder", "tiny", *extra])


def test_a_checkpoint_seeds_its_ema_weights_once(
    tmp_path: Path, base: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = volume_with_tiny(tmp_path, base)
    source = write_finetune(tmp_path / "ckpts", base, seed=1)
    assert seed_finetune(volume, source) == 0
    out, err = capsys.readouterr()
    assert "5 fetched" in out and "model_last.pt, converted to safetensors" in out
    assert "finetune.yaml differs from --arch F5TTS_v1_Base" in err and "the yaml wins" in err
    folder = volume.model("tiny-de")
    assert folder.is_complete()
    ema = torch.load(source / "model_last.pt", weights_only=True)["ema_model_state_dict"]
    seeded = load_file(str(folder.weights))
    assert seeded.keys() == {k.removeprefix("ema_model.") for k in ema} - {"initted", "step"}
    assert all(torch.equal(seeded[k.removeprefix("ema_model.")], v) for k, v in ema.items() if k.startswith("ema_"))
    config = folder.config()
    assert config["arch"]["dim"] == 64 and config["arch"]["checkpoint_activations"] is False
    assert config["source"]["checkpoint"]["file"] == "model_last.pt"

    before = {p: p.stat().st_mtime_ns for p in folder.path.rglob("*")}
    assert seed_finetune(volume, source) == 0
    assert "already seeded" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in folder.path.rglob("*")} == before


def test_a_damaged_file_is_found_by_doctor_and_mended_by_seeding_again(tmp_path: Path, base: ModelFolder) -> None:
    volume = volume_with_tiny(tmp_path, base)
    source = write_finetune(tmp_path / "ckpts", base, seed=1)
    assert seed_finetune(volume, source) == 0
    weights = volume.model("tiny-de").weights
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    ctx = Context(Settings(volume=volume.root, model="tiny-de", device="cpu"))
    checks = {c.name: c for c in run_checks(ctx, ("model.complete", "model.checksums"))}
    assert checks["model.complete"].status == "pass"
    assert checks["model.checksums"].status == "fail" and "model.safetensors" in checks["model.checksums"].detail
    assert seed_finetune(volume, source) == 0
    assert [c.status for c in run_checks(ctx, ("model.checksums", "model.vocab", "model.weights"))] == ["pass"] * 3


def test_a_checkpoint_without_its_vocab_fails_in_one_line(
    tmp_path: Path, base: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = volume_with_tiny(tmp_path, base)
    source = write_finetune(tmp_path / "ckpts", base, seed=1)
    (source / "vocab.txt").unlink()
    assert seed_finetune(volume, source) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "has no vocab.txt" in err[0], err
    assert not volume.model("tiny-de").path.exists()


def test_weights_that_do_not_fit_the_arch_fail_before_anything_is_copied(
    tmp_path: Path, base: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = volume_with_tiny(tmp_path, base)
    source = write_finetune(tmp_path / "ckpts", base, seed=1, yaml_config=False)
    assert seed_finetune(volume, source) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit --arch F5TTS_v1_Base and vocab.txt" in err[0], err
    assert not volume.model("tiny-de").path.exists()


def test_a_bigvgan_model_is_refused_at_seed_time_and_by_doctor(
    tmp_path: Path, base: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = volume_with_tiny(tmp_path, base)
    source = write_finetune(tmp_path / "ckpts", base, seed=1)
    config = (source / "finetune.yaml").read_text().replace("mel_spec_type: vocos", "mel_spec_type: bigvgan")
    (source / "finetune.yaml").write_text(config)
    assert seed_finetune(volume, source) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "BigVGAN" in err[-1] and "third_party.BigVGAN" in err[-1]

    tiny = volume.model("tiny")
    tiny.config_file.write_text(json.dumps({**tiny.config(), "mel_spec": {**tiny.config()["mel_spec"],
                                                                          "mel_spec_type": "bigvgan"}}))
    tiny.write_checksums()
    found = run_checks(Context(Settings(volume=volume.root, model="tiny", device="cpu")), ("model.complete",))[0]
    assert found.status == "fail" and "BigVGAN" in found.detail


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "x"], "give its folder with --from DIR"),
    (["--arch", "F5TTS_Huge", "--name", "x", "--from", "{ckpts}"], "unknown --arch 'F5TTS_Huge'"),
    (["--from", "{ckpts}"], "name its model with --name NAME"),
])
def test_checkpoint_usage_errors(
    tmp_path: Path, base: ModelFolder, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_finetune(tmp_path / "ckpts", base, seed=1)
    given = [arg.replace("{ckpts}", str(source)) for arg in args]
    assert main(["--volume", str(tmp_path / "volume"), *given]) == 2
    assert message in capsys.readouterr().err
