"""Where an ASR model's files come from: a Whisper repository of the hub, a local mirror of it, or the tiny build.

The files go through the same flow as the TTS model's (`processor.seeding.flow`)
into `<volume>/asr/<name>/`, where `name` is the repository id's last part: the
worker's `F5B_ASR_MODEL` names that folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.seeding.cli import DEFAULT_ASR_MODEL
from processor.seeding.random_asr import build_tiny_asr
from processor.seeding.sources import (
    FileByFile,
    SeedError,
    SourceFile,
    copy_into,
    hub_download,
    hub_errors,
    mirror_digests,
)
from processor.storage.volume import ASR_FILES, ASR_OPTIONAL_FILES, AsrFolder, Volume

DEFAULT_ASR_REPO = DEFAULT_ASR_MODEL
ASR_WEIGHTS = "model.safetensors"


def asr_name(repo_id: str) -> str:
    """The folder name under `<volume>/asr/`: `openai/whisper-large-v3-turbo` -> `whisper-large-v3-turbo`."""
    return repo_id.rstrip("/").rsplit("/", 1)[-1]


def listed(repo_id: str, found: dict[str, tuple[int, str | None, str]]) -> list[SourceFile]:
    """{file: (size, digest, origin)} of a repository, as source files: every required one, the optional ones found."""
    missing = [name for name in ASR_FILES if name not in found]
    if missing:
        raise SeedError(f"{repo_id} lacks {', '.join(missing)}: not a Whisper checkpoint in transformers' layout "
                        f"with safetensors weights")
    return [SourceFile(name, found[name][2], found[name][0], found[name][1])
            for name in (*ASR_FILES, *ASR_OPTIONAL_FILES) if name in found]


@dataclass(frozen=True)
class AsrHubSource(FileByFile):
    """A Whisper repository of the Hugging Face hub; LFS files come with the hub's SHA-256."""

    repo_id: str

    @property
    def label(self) -> str:
        return f"the Hugging Face hub ({self.repo_id})"

    def files(self) -> list[SourceFile]:
        from huggingface_hub import HfApi

        found: dict[str, tuple[int, str | None, str]] = {}
        with hub_errors():
            infos: list[Any] = HfApi().get_paths_info(self.repo_id, [*ASR_FILES, *ASR_OPTIONAL_FILES], expand=True)
        for info in infos:
            if getattr(info, "size", None) is not None:
                lfs = getattr(info, "lfs", None)
                found[info.path] = (int(info.size), lfs.sha256 if lfs else None, f"{self.repo_id}/{info.path}")
        return listed(self.repo_id, found)

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        return hub_download(self.repo_id, file.target, staging)


def asr_hub_source(volume: Volume, repo_id: str) -> AsrHubSource:
    """A hub source whose downloads and caches stay on the volume."""
    volume.apply_cache_environment(offline=False)
    return AsrHubSource(repo_id)


@dataclass(frozen=True)
class AsrMirrorSource(FileByFile):
    """A local copy of the hub: `root/<repo id>/<file>`, digests optionally in `root/SHA256SUMS`."""

    root: Path
    repo_id: str

    @property
    def label(self) -> str:
        return f"the mirror {self.root}"

    def files(self) -> list[SourceFile]:
        digests = mirror_digests(self.root)
        found: dict[str, tuple[int, str | None, str]] = {}
        for name in (*ASR_FILES, *ASR_OPTIONAL_FILES):
            path = self.root / self.repo_id / name
            if path.is_file():
                found[name] = (path.stat().st_size, digests.get(f"{self.repo_id}/{name}"), str(path))
        return listed(f"the mirror's {self.repo_id}", found)

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        return copy_into(self.root / self.repo_id / file.target, staging / "hub" / self.repo_id / file.target)


@dataclass(frozen=True)
class TinyAsrSource:
    """The tiny random-weight Whisper, built locally by `build_tiny_asr`: no network, gibberish transcripts."""

    @property
    def label(self) -> str:
        return "build_tiny_asr (tiny Whisper, random weights)"

    @property
    def all_or_nothing(self) -> bool:
        return True  # a rebuild by newer code need not fit an older tokenizer

    def files(self) -> list[SourceFile]:
        return [SourceFile(name, self.label, None, None) for name in (*ASR_FILES, "tokenizer.json")]

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        build = AsrFolder(staging / "random-asr")
        if not build.path.exists():
            build_tiny_asr(build)
        return build.path / file.target
