"""A custom checkpoint (a fine-tune) as a model folder: `f5-batch seed --from DIR --name NAME --arch ARCH`.

DIR holds, as F5-TTS's training leaves them (f5_tts/model/trainer.py, train/finetune_cli.py):

- the checkpoint: `model_last.pt` or `model_<update>.pt` (EMA weights under
  `ema_model_state_dict`, which F5-TTS's `load_checkpoint` reads with `use_ema=True`), or
  a `.safetensors` file of EMA weights (the hub's, or the Gradio app's pruned export).
  With several: `model_last.pt`, else the highest update; the base model that
  `finetune_cli` copies in as `pretrained_*` only when it is the only one. `--from FILE`
  names the file itself;
- `vocab.txt`, the vocabulary it was trained with;
- optionally a model config yaml: a training config like F5-TTS's own `configs/*.yaml`
  (hydra writes the run's to `.hydra/config.yaml`), or its `model:` section alone.

The yaml wins: it gives the architecture the checkpoint was trained with (a
fine-tune may change it), and `--arch` (one of F5-TTS's configs) is needed only
without one; when both are given and differ, a note says so. Either way the
checkpoint's every key and shape must fit that architecture and the vocab, checked
before anything is copied. Options that only training uses
(DiT's `checkpoint_activations`) are turned off in `config.json`. DiT and UNetT
(E2-TTS) checkpoints are both served.

The vocoder is not in DIR: its two files come from the volume (`--vocoder NAME`, a
seeded model's `vocos/`, by default the first seeded model that has
charactr/vocos-mel-24khz, the Vocos every F5-TTS config names) or a folder
(`--vocoder DIR`: `config.yaml` and `pytorch_model.bin`, e.g. a mirror's
`charactr/vocos-mel-24khz/`). The hub is never contacted. BigVGAN models are refused:
F5-TTS loads that vocoder from `third_party.BigVGAN`, which its wheel does not ship.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from processor.errors import ModelError
from processor.model import (
    EMA_PREFIX,
    MEL_SPEC,
    SKIPPED_KEYS,
    build_cfm,
    check_supported,
    empty_weights,
    load_exactly,
    model_config,
    read_vocab,
    weights_bytes,
)
from processor.seeding.sources import (
    VOCODER_FILES,
    VOCODER_REPO,
    VOCOS_MEL_24KHZ,
    WEIGHTS,
    SeedError,
    SourceFile,
    copy_into,
    f5tts_model_yaml,
    source_checksums,
)
from processor.storage.volume import ModelFolder, Volume

CHECKPOINT_SUFFIXES = (".pt", ".safetensors")
LAST = "model_last.pt"
NUMBERED = re.compile(r"model_(\d+)\.(pt|safetensors)")
PRETRAINED = "pretrained_"
YAML_SUFFIXES = (".yaml", ".yml")
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
# Arch options that change how the model runs, not what its weights are: left out when --arch and a yaml are compared.
RUNTIME_OPTIONS = ("checkpoint_activations", "attn_backend", "attn_mask_enabled")


@dataclass(frozen=True)
class Vocoder:
    """Where the two vocoder files come from, and the digests it vouches for (a seeded folder's SHA256SUMS)."""

    path: Path  # holds config.yaml and pytorch_model.bin
    label: str
    digests: dict[str, str]


@dataclass(frozen=True)
class CheckpointSource:
    """A fine-tune's checkpoint, vocab and (optional) yaml, converted into a model folder with a vocoder of the volume.

    All or nothing: weights, vocab and config only fit each other as a set.
    """

    checkpoint: Path
    vocab: Path
    config_yaml: Path | None
    arch: str | None
    name: str
    vocoder: Vocoder

    @property
    def label(self) -> str:
        return f"the checkpoint {self.checkpoint} (vocoder: {self.vocoder.label})"

    @property
    def all_or_nothing(self) -> bool:
        return True

    def files(self) -> list[SourceFile]:
        if not self.vocab.is_file():
            raise SeedError(f"{self.vocab.parent} has no vocab.txt: a checkpoint needs the vocab.txt it was trained "
                            f"with (F5-TTS's training reads it from data/<dataset>_<tokenizer>/vocab.txt)")
        config = self.config()
        vocab = read_vocab(self.vocab)
        hint = f"--arch {self.arch}" if self.config_yaml is None else f"{self.config_yaml.name}"
        check_fits(config, vocab, checkpoint_state(self.checkpoint), self.checkpoint, hint)
        content = (json.dumps(config, indent=2) + "\n").encode()
        size = self.checkpoint.stat().st_size
        weights = (SourceFile(WEIGHTS, str(self.checkpoint), size, None) if self.checkpoint.suffix == ".safetensors"
                   else SourceFile(WEIGHTS, f"{self.checkpoint}, converted to safetensors", None, None,
                                   size_hint=weights_bytes(config, len(vocab))))
        return [
            weights,
            SourceFile("vocab.txt", str(self.vocab), self.vocab.stat().st_size, None),
            SourceFile("config.json", f"{self.config_origin}, its model section", len(content),
                       hashlib.sha256(content).hexdigest(), content),
            *(SourceFile(f"vocos/{name}", str(self.vocoder.path / name), (self.vocoder.path / name).stat().st_size,
                         self.vocoder.digests.get(name)) for name in VOCODER_FILES),
        ]

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        if file.target == WEIGHTS:
            if self.checkpoint.suffix == ".safetensors":
                return copy_into(self.checkpoint, staging / "checkpoint" / WEIGHTS)
            return convert(self.checkpoint, staging / "checkpoint" / WEIGHTS)
        if file.target == "vocab.txt":
            return copy_into(self.vocab, staging / "checkpoint" / "vocab.txt")
        name = file.target.removeprefix("vocos/")
        return copy_into(self.vocoder.path / name, staging / "vocoder" / name)

    @property
    def config_origin(self) -> str:
        return str(self.config_yaml) if self.config_yaml else f"f5_tts/configs/{self.arch}.yaml"

    def config(self) -> dict[str, Any]:
        """`config.json`: the yaml's model section (else --arch's), with where every file came from."""
        section = yaml_model_section(self.config_yaml) if self.config_yaml else arch_section(self.arch)
        if self.config_yaml and self.arch:
            differs = arch_differences(arch_section(self.arch)["arch"], section["arch"])
            if differs:
                print(f"note: {self.config_yaml.name} differs from --arch {self.arch} in {', '.join(differs)}: "
                      f"the yaml wins", file=sys.stderr)
        if section.get("tokenizer") == "byte":
            raise SeedError(f"{self.config_origin}: the byte tokenizer is not supported, only a vocab.txt")
        mel = section.get("mel_spec") or dict(MEL_SPEC)
        try:
            check_supported({"name": self.name, "backbone": section.get("backbone"), "mel_spec": mel})
        except ModelError as exc:
            raise SeedError(f"{self.config_origin}: {exc}") from exc
        arch = {key: value for key, value in section["arch"].items() if key != "checkpoint_activations"}
        if section["backbone"] == "DiT":  # UNetT takes no such option
            arch["checkpoint_activations"] = False
        source = {"checkpoint": {"file": self.checkpoint.name, "config": self.config_origin},
                  "vocoder": {"from": self.vocoder.label, "files": list(VOCODER_FILES)}}
        return model_config(self.name, arch, backbone=section["backbone"], source=source)


def checkpoint_source(
    given: Path, name: str, arch: str | None, vocoder: str | None, volume: Volume
) -> CheckpointSource:
    """The source for `--from` a checkpoint DIR (or FILE), `--arch` and `--vocoder` as given."""
    folder = given.parent if given.is_file() else given
    checkpoint = given if given.is_file() else pick_checkpoint(folder)
    config_yaml = find_yaml(folder)
    if config_yaml is None and arch is None:
        raise SeedError(f"{folder} has no model config yaml: give the architecture with --arch ARCH "
                        f"(one of F5-TTS's configs, e.g. F5TTS_v1_Base)")
    return CheckpointSource(checkpoint, folder / "vocab.txt", config_yaml, arch, name, find_vocoder(volume, vocoder))


def f5tts_architectures() -> list[str]:
    """The configs F5-TTS ships (f5_tts/configs/*.yaml): what --arch may name."""
    from importlib.resources import files as package_files

    return sorted(r.name.removesuffix(".yaml") for r in package_files("f5_tts").joinpath("configs").iterdir()
                  if r.name.endswith(".yaml"))


def is_checkpoint_dir(path: Path) -> bool:
    return any(p.suffix in CHECKPOINT_SUFFIXES for p in path.iterdir() if p.is_file())


def pick_checkpoint(folder: Path) -> Path:
    """The checkpoint F5-TTS's training left last in `folder` (see the module's docstring)."""
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if not found:
        raise SeedError(f"{folder} has no checkpoint (a .pt or .safetensors file)")
    if (folder / LAST).is_file():
        return folder / LAST
    numbered = [(int(m.group(1)), p) for p in found if (m := NUMBERED.fullmatch(p.name))]
    if numbered:
        return max(numbered)[1]
    own = [p for p in found if not p.name.startswith(PRETRAINED)]
    if len(own) == 1 or len(found) == 1:
        return (own or found)[0]
    raise SeedError(f"{folder} has several checkpoints ({', '.join(p.name for p in found)}): "
                    f"pass the one to seed as --from FILE")


def find_yaml(folder: Path) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES)
    if not found and (folder / HYDRA_CONFIG).is_file():
        return folder / HYDRA_CONFIG
    if len(found) > 1:
        raise SeedError(f"{folder} has several yaml files ({', '.join(p.name for p in found)}): keep only the "
                        f"model config F5-TTS's training wrote")
    return found[0] if found else None


def yaml_model_section(path: Path) -> dict[str, Any]:
    """The `model:` section of a training config, or the file itself when it is that section."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SeedError(f"{path} is not valid yaml: {str(exc).splitlines()[0]}") from exc
    section = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), dict) else data
    if not isinstance(section, dict) or not isinstance(section.get("arch"), dict) or "backbone" not in section:
        raise SeedError(f"{path} is not an F5-TTS model config: it has no model.backbone and model.arch")
    return section


def arch_section(arch: str | None) -> dict[str, Any]:
    if arch is None:
        raise SeedError("--arch is required without a model config yaml")
    return f5tts_model_yaml(arch)


def arch_differences(expected: dict[str, Any], given: dict[str, Any]) -> list[str]:
    keys = (expected.keys() | given.keys()) - set(RUNTIME_OPTIONS)
    return sorted(key for key in keys if expected.get(key) != given.get(key))


def checkpoint_state(path: Path) -> dict[str, Any]:
    """The checkpoint's EMA weights as the model's state-dict keys, as F5-TTS's `load_checkpoint(use_ema=True)`
    takes them. A .pt is memory-mapped: training checkpoints also hold the optimizer's state, several GB."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise SeedError(f"{path} is not a readable safetensors file: {exc}") from exc
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # a truncated or foreign file: pickle, zip and torch errors alike
            raise SeedError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("ema_model_state_dict"), dict):
            raise SeedError(f"{path} has no ema_model_state_dict: not a checkpoint of F5-TTS's training")
        state = checkpoint["ema_model_state_dict"]
    weights = {key.removeprefix(EMA_PREFIX): value for key, value in state.items()}
    return {key: value for key, value in weights.items() if key not in SKIPPED_KEYS}


def check_fits(config: dict[str, Any], vocab: dict[str, int], state: dict[str, Any], path: Path, hint: str) -> None:
    """Every key and shape of the checkpoint as the config and vocab build the model; no weight is copied."""
    import torch

    with empty_weights():
        cfm = build_cfm(config, vocab)
    try:
        load_exactly(cfm, {key: torch.empty(value.shape, device="meta") for key, value in state.items()}, path)
    except ModelError as exc:
        message = str(exc).replace("do not match config.json", f"do not fit {hint} and vocab.txt")
        raise SeedError(message) from exc


def convert(checkpoint: Path, dest: Path) -> Path:
    """The checkpoint's EMA weights alone, as safetensors: what the worker and doctor read."""
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous().clone() for key, value in checkpoint_state(checkpoint).items()}, str(dest))
    return dest


def find_vocoder(volume: Volume, given: str | None) -> Vocoder:
    """`--vocoder NAME` (a seeded model), `--vocoder DIR`, or the first seeded model with charactr/vocos-mel-24khz."""
    if given is not None and ("/" in given or Path(given).is_dir()):
        path = Path(given)
        missing = [name for name in VOCODER_FILES if not (path / name).is_file()]
        if missing:
            raise SeedError(f"--vocoder {given} lacks {', '.join(missing)}: give a Vocos folder or a seeded model")
        return Vocoder(path, str(path), {})
    if given is not None:
        folder = volume.model(given)
        if folder.missing_files():
            raise SeedError(f"--vocoder {given}: no model {given} is seeded on {volume.root} "
                            f"(it has {', '.join(volume.seeded_models()) or 'none'})")
        return seeded_vocoder(folder)
    for name in volume.seeded_models():
        folder = volume.model(name)
        if yaml.safe_load((folder.vocoder_dir / "config.yaml").read_text()) == VOCOS_MEL_24KHZ:
            return seeded_vocoder(folder)
    raise SeedError(f"no model on {volume.root} has the {VOCODER_REPO} vocoder to copy: seed one first "
                    f"(f5-batch seed --volume {volume.root}), or give --vocoder NAME or --vocoder DIR")


def seeded_vocoder(folder: ModelFolder) -> Vocoder:
    digests = source_checksums(folder)
    return Vocoder(folder.vocoder_dir, f"models/{folder.name}/vocos",
                   {name: digests[f"vocos/{name}"] for name in VOCODER_FILES if f"vocos/{name}" in digests})
