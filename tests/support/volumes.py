"""The tiny random models on a volume (`build_tiny`'s F5-TTS, `build_tiny_asr`'s Whisper): what the suite, the
benchmarks and the reliability report run the real F5-TTS and transformers classes on."""

from __future__ import annotations

from pathlib import Path

from processor.seeding.random_asr import TINY_ASR, build_tiny_asr
from processor.seeding.random_models import build_random, build_tiny, tiny_e2
from processor.storage.volume import AsrFolder, ModelFolder, Volume


def build_tiny_model(folder: ModelFolder) -> ModelFolder:
    """The tiny model's files in `folder`, with their checksums, as a seeded volume holds them."""
    build_tiny(folder)
    folder.write_checksums()
    return folder


def add_tiny_e2(volume: Volume, name: str = "tiny-e2") -> ModelFolder:
    """The tiny UNetT (E2-TTS) model as `name` on `volume`, with its checksums, as a seeded volume holds it."""
    folder = volume.model(name)
    build_random(folder, tiny_e2(name))
    folder.write_checksums()
    return folder


def build_tiny_asr_model(folder: AsrFolder) -> AsrFolder:
    """The tiny Whisper's files in `folder`, with their checksums, as `seed --tiny` leaves them."""
    build_tiny_asr(folder)
    folder.write_checksums()
    return folder


def make_tiny_volume(root: Path, *, asr: bool = True) -> Volume:
    """A volume at `root` holding the tiny model under the name `tiny`, and (with `asr`) the tiny Whisper as asr/tiny.

    The Whisper costs about 4 s once per process, nearly all of it importing transformers."""
    volume = Volume(root)
    build_tiny_model(volume.model("tiny"))
    if asr:
        build_tiny_asr_model(volume.asr(TINY_ASR))
    return volume


def write_finetune(folder: Path, base: ModelFolder, seed: int, *, yaml_config: bool = True) -> Path:
    """A fine-tune's checkpoint folder as F5-TTS's training leaves it, made from `base`'s weights perturbed with
    `seed`: `model_last.pt` (EMA weights under `ema_model_state_dict`, with the trainer's other entries), the base
    model `finetune_cli` copies in as `pretrained_*`, `vocab.txt`, and (with `yaml_config`) its training yaml."""
    import shutil

    import torch
    import yaml
    from safetensors.torch import load_file

    from processor.model import MEL_SPEC

    folder.mkdir(parents=True, exist_ok=True)
    base_state = load_file(str(base.weights))
    generator = torch.Generator().manual_seed(seed)
    ema = {key: value + 0.02 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
           for key, value in base_state.items()}
    trained = {key.removeprefix("ema_model."): value for key, value in ema.items()}
    torch.save({"model_state_dict": trained, "ema_model_state_dict": {**ema, "initted": torch.tensor(True),
                "step": torch.tensor(1000)}, "update": 1000}, folder / "model_last.pt")
    torch.save({"ema_model_state_dict": base_state}, folder / "pretrained_model_1200000.pt")
    shutil.copyfile(base.vocab, folder / "vocab.txt")
    if yaml_config:
        config = base.config()
        training = {"checkpoint_activations": True} if config["backbone"] == "DiT" else {}  # UNetT has no such option
        model = {"name": config["name"], "tokenizer": "custom", "tokenizer_path": "vocab.txt",
                 "backbone": config["backbone"], "arch": {**config["arch"], **training},
                 "mel_spec": dict(MEL_SPEC), "vocoder": {"is_local": False, "local_path": None}}
        (folder / "finetune.yaml").write_text(yaml.safe_dump({"model": model, "optim": {"epochs": 1}}))
    return folder


def add_finetune(volume: Volume, name: str, seed: int) -> ModelFolder:
    """A second tiny model, `name`, seeded on `volume` from a fine-tune of its `tiny` (other weights, same shapes)
    through `f5-batch seed --from DIR --name NAME --arch ARCH`, in this process."""
    from processor.seeding.cli import main

    source = write_finetune(volume.root.parent / f"{volume.root.name}-{name}-checkpoint", volume.model("tiny"), seed)
    status = main(["--volume", str(volume.root), "--from", str(source), "--name", name, "--arch", "F5TTS_v1_Base",
                   "--vocoder", "tiny"])
    assert status == 0, f"seeding {name} failed ({status})"
    return volume.model(name)
