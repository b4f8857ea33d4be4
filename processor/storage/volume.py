"""The persistent volume: where models and caches live, and nothing else.

Layout (one folder per model, caches beside them)::

    <volume>/models/<name>/model.safetensors
                          /model.fp16.safetensors   optional: the same weights in fp16, for GPUs
                          /vocab.txt
                          /config.json        backbone, arch and mel settings
                          /vocos/config.yaml
                          /vocos/pytorch_model.bin
                          /SHA256SUMS         `sha256sum -c` format, every file above
    <volume>/asr/<name>/config.json           a Whisper checkpoint in transformers' layout (`AsrFolder`):
                       /generation_config.json
                       /model.safetensors
                       /preprocessor_config.json
                       /tokenizer_config.json, vocab.json, merges.txt   (tokenizer.json, normalizer.json,
                       /SHA256SUMS         added_tokens.json, special_tokens_map.json when the checkpoint has them)
    <volume>/cache/huggingface                HF_HOME
    <volume>/cache/torch                      TORCH_HOME

Processing files never go here (see `workdir.py`); user data never goes here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

RUNPOD_VOLUME = Path("/runpod-volume")

MODEL_FILES = (
    "model.safetensors",
    "vocab.txt",
    "config.json",
    "vocos/config.yaml",
    "vocos/pytorch_model.bin",
)
# Derived from model.safetensors by the seed script on request (`--fp16-copy`): exactly its
# tensors in fp16, what a GPU computes with, so a GPU worker reads half the bytes.
FP16_WEIGHTS = "model.fp16.safetensors"
OPTIONAL_FILES = (FP16_WEIGHTS,)
CHECKSUMS_FILE = "SHA256SUMS"
# What transformers' `pipeline("automatic-speech-recognition", model=<folder>)` needs of a Whisper checkpoint,
# and the files it reads when they are there: every Whisper repository of the hub has the first set.
ASR_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
)
ASR_OPTIONAL_FILES = ("tokenizer.json", "added_tokens.json", "special_tokens_map.json", "normalizer.json")


def default_volume() -> Path:
    """`/runpod-volume` when the pod has one mounted, else `./volume` for local use."""
    return RUNPOD_VOLUME if RUNPOD_VOLUME.is_dir() else Path("volume")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFolder:
    """One model's files on the volume."""

    path: Path
    required_files: ClassVar[tuple[str, ...]] = MODEL_FILES
    optional_names: ClassVar[tuple[str, ...]] = OPTIONAL_FILES

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def weights_fp16(self) -> Path:
        return self.path / FP16_WEIGHTS

    @property
    def vocab(self) -> Path:
        return self.path / "vocab.txt"

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def vocoder_dir(self) -> Path:
        return self.path / "vocos"

    @property
    def checksums_file(self) -> Path:
        return self.path / CHECKSUMS_FILE

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config_file.read_text())
        return data

    def missing_files(self) -> list[str]:
        return [rel for rel in (*self.required_files, CHECKSUMS_FILE) if not (self.path / rel).is_file()]

    def recorded_checksums(self) -> dict[str, str]:
        """The `SHA256SUMS` file as {relative path: hex digest}."""
        sums: dict[str, str] = {}
        if not self.checksums_file.is_file():
            return sums
        for line in self.checksums_file.read_text().splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:  # a malformed line lists nothing, so its file counts as unverified
                sums[parts[1].lstrip("*")] = parts[0]
        return sums

    def optional_files(self, *, recorded: bool = False) -> list[str]:
        """Optional files present (or, with `recorded`, also those SHA256SUMS lists: then they must be present)."""
        listed = self.recorded_checksums() if recorded else {}
        return [rel for rel in self.optional_names if (self.path / rel).is_file() or rel in listed]

    def write_checksums(self) -> dict[str, str]:
        sums = {rel: sha256_file(self.path / rel) for rel in (*self.required_files, *self.optional_files())}
        tmp = self.checksums_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{digest}  {rel}\n" for rel, digest in sums.items()))
        os.replace(tmp, self.checksums_file)
        return sums

    def checksum_mismatches(self) -> list[str]:
        """Files whose content differs from `SHA256SUMS` (or that it does not list, or that it lists but are gone)."""
        recorded = self.recorded_checksums()
        bad = []
        for rel in (*self.required_files, *self.optional_files(recorded=True)):
            file = self.path / rel
            if rel not in recorded or not file.is_file() or sha256_file(file) != recorded[rel]:
                bad.append(rel)
        return bad

    def is_complete(self, verify: bool = True) -> bool:
        if self.missing_files():
            return False
        return not verify or not self.checksum_mismatches()


@dataclass(frozen=True)
class AsrFolder(ModelFolder):
    """One speech-recognition model (a Whisper checkpoint) on the volume: the same verify-and-seed rules."""

    required_files: ClassVar[tuple[str, ...]] = ASR_FILES
    optional_names: ClassVar[tuple[str, ...]] = ASR_OPTIONAL_FILES


@dataclass(frozen=True)
class Volume:
    root: Path

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def asr_dir(self) -> Path:
        return self.root / "asr"

    @property
    def hf_home(self) -> Path:
        return self.root / "cache" / "huggingface"

    @property
    def torch_home(self) -> Path:
        return self.root / "cache" / "torch"

    def model(self, name: str) -> ModelFolder:
        return ModelFolder(self.models_dir / name)

    def asr(self, name: str) -> AsrFolder:
        """The ASR model `name`: the last part of its hub repository id (`whisper-large-v3-turbo`), or `tiny`."""
        return AsrFolder(self.asr_dir / name)

    def seeded_models(self) -> list[str]:
        """Names of the model folders with every file present (checksums are not read: that takes a while)."""
        if not self.models_dir.is_dir():
            return []
        return sorted(path.name for path in self.models_dir.iterdir()
                      if path.is_dir() and not ModelFolder(path).missing_files())

    def cache_environment(self) -> dict[str, str]:
        """Environment that points every cache at the volume, never the container disk."""
        return {
            "HF_HOME": str(self.hf_home.resolve()),
            "HF_HUB_CACHE": str((self.hf_home / "hub").resolve()),
            "TORCH_HOME": str(self.torch_home.resolve()),
        }

    def apply_cache_environment(self, offline: bool = True) -> None:
        """Point the caches at the volume before torch or huggingface_hub read them.

        `offline` forbids hub access at run time: the worker loads only what the
        seed script put on the volume.
        """
        os.environ.update(self.cache_environment())
        if offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
