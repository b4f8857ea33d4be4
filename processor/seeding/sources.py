"""Where a model folder's files come from: the hub, a local mirror of it, another model folder, random weights.

Every source lists its files with what it can promise before fetching them (size,
digest), and fetches one into a staging folder; `processor.seeding.flow` does the
rest (what to keep, free space, verification, moving into place) the same for all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any, Protocol

import yaml

from processor.model import BACKBONES, MEL_SPEC, model_config, read_vocab, weights_bytes
from processor.seeding.random_models import RANDOM_NOTE, RandomModel, build_random, vocos_config, wheel_vocab
from processor.storage.volume import MODEL_FILES, ModelFolder, Volume

F5TTS_REPO = "SWivid/F5-TTS"
E2TTS_REPO = "SWivid/E2-TTS"
VOCODER_REPO = "charactr/vocos-mel-24khz"
VOCODER_FILES = ("config.yaml", "pytorch_model.bin")
# charactr/vocos-mel-24khz's config.yaml: the vocoder every shipped F5-TTS vocos model uses.
VOCOS_MEL_24KHZ = vocos_config(dim=512, intermediate_dim=1536, num_layers=8)
WEIGHTS = "model.safetensors"


class SeedError(Exception):
    """An expected failure: reported as one message on stderr, exit status 1, no traceback."""


class HubUnreachable(SeedError):
    """The hub cannot be reached; the message says how to seed without it."""


@dataclass(frozen=True)
class RemoteFile:
    """One file in a hub repository."""

    repo_id: str
    path: str

    @property
    def hub_path(self) -> str:
        """`<repo id>/<path>`: its address on the hub and its place in a local mirror."""
        return f"{self.repo_id}/{self.path}"


@dataclass(frozen=True)
class HubModel:
    """Where one known model's files live on the hub."""

    name: str
    weights: str
    vocab: str
    repo_id: str = F5TTS_REPO

    def remote_files(self) -> dict[str, RemoteFile]:
        """{path inside the model folder: hub file} for every file that is downloaded."""
        return {
            "model.safetensors": RemoteFile(self.repo_id, self.weights),
            "vocab.txt": RemoteFile(self.repo_id, self.vocab),
            **{f"vocos/{name}": RemoteFile(VOCODER_REPO, name) for name in VOCODER_FILES},
        }


HUB_MODELS: dict[str, HubModel] = {
    model.name: model
    for model in (
        HubModel("F5TTS_v1_Base", "F5TTS_v1_Base/model_1250000.safetensors", "F5TTS_v1_Base/vocab.txt"),
        HubModel("F5TTS_Base", "F5TTS_Base/model_1200000.safetensors", "F5TTS_Base/vocab.txt"),
        # F5-TTS's api.py / infer_cli.py: E2TTS_Base lives in its own repository (vocos checkpoint, 1.2 M updates).
        HubModel("E2TTS_Base", "E2TTS_Base/model_1200000.safetensors", "E2TTS_Base/vocab.txt", E2TTS_REPO),
    )
}


@dataclass(frozen=True)
class SourceFile:
    """One file a source can provide, with what it promises about it before fetching."""

    target: str  # path inside the model folder
    origin: str  # where it comes from, for messages
    size: int | None  # None: unknown until made
    sha256: str | None  # None: the source publishes no digest (e.g. non-LFS hub files)
    content: bytes | None = field(default=None, repr=False)  # written by us, not fetched
    size_hint: int | None = None  # an estimate when `size` is unknown, for the free-space check


class Source(Protocol):
    """Where a model folder's files come from; the seeding flow is the same for all."""

    @property
    def label(self) -> str: ...

    @property
    def all_or_nothing(self) -> bool:
        """True when files are only guaranteed consistent as a set, so none can be kept alone."""
        ...

    def files(self) -> list[SourceFile]:
        """Every file of the model folder (except SHA256SUMS), with sizes and digests if known."""
        ...

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        """Put `file` somewhere under `staging` and return where."""
        ...


class FileByFile:
    """For sources whose files stand alone: one already present and intact is kept, the others fetched."""

    @property
    def all_or_nothing(self) -> bool:
        return False


def f5tts_model_yaml(name: str) -> dict[str, Any]:
    """The `model` section of F5-TTS's own training config for `name`."""
    resource = package_files("f5_tts").joinpath(f"configs/{name}.yaml")
    if not resource.is_file():
        raise SeedError(f"F5-TTS has no configs/{name}.yaml: cannot write config.json for {name}")
    section: dict[str, Any] = yaml.safe_load(resource.read_text(encoding="utf-8"))["model"]
    return section


def hub_model_config(model: HubModel) -> dict[str, Any]:
    """`config.json` for a hub model: architecture from F5-TTS's yaml, plus where the files came from."""
    section = f5tts_model_yaml(model.name)
    # model_config() always writes MEL_SPEC; a model with other mel settings would get a lying config.
    if section.get("mel_spec") != MEL_SPEC:
        raise SeedError(f"{model.name} uses mel settings {section.get('mel_spec')}; only {MEL_SPEC} is supported")
    remote = model.remote_files()
    source = {
        "weights": {"repo": model.repo_id, "file": remote["model.safetensors"].path},
        "vocab": {"repo": model.repo_id, "file": remote["vocab.txt"].path},
        "vocoder": {"repo": VOCODER_REPO, "files": list(VOCODER_FILES)},
    }
    return model_config(model.name, section["arch"], backbone=section["backbone"], source=source)


def hub_config_file(model: HubModel) -> SourceFile:
    """`config.json` as a file whose content, and so digest, is known before seeding."""
    content = (json.dumps(hub_model_config(model), indent=2) + "\n").encode()
    digest = hashlib.sha256(content).hexdigest()
    return SourceFile("config.json", f"generated from f5_tts/configs/{model.name}.yaml", len(content), digest, content)


@contextlib.contextmanager
def hub_errors() -> Iterator[None]:
    """Turn huggingface_hub's many ways of saying "no network" into one actionable error."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except unreachable_errors() as exc:
        raise HubUnreachable(
            f"cannot reach the Hugging Face hub: {type(exc).__name__}: {first_line(exc)}\n"
            "  To work offline, seed the random-weight test model with --tiny,\n"
            "  or seed from a local mirror with --from DIR (hub layout: DIR/<repo id>/<file>)."
        ) from exc
    except HfHubHTTPError as exc:
        raise SeedError(f"the Hugging Face hub refused the request: {first_line(exc)}") from exc


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning the hub is out of reach (offline mode, DNS, refused, timeout)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    kinds: list[type[BaseException]] = [OfflineModeIsEnabled, LocalEntryNotFoundError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import httpx

        kinds.append(httpx.TransportError)
    with contextlib.suppress(ImportError):
        import requests

        kinds += [requests.ConnectionError, requests.Timeout]
    return tuple(kinds)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


@dataclass(frozen=True)
class HubSource(FileByFile):
    """The Hugging Face hub. Build it with `hub_source()` so caches land on the volume."""

    model: HubModel

    @property
    def label(self) -> str:
        return f"the Hugging Face hub ({self.model.repo_id}, {VOCODER_REPO})"

    def files(self) -> list[SourceFile]:
        infos = self._paths_info()
        listed = []
        for target, remote in self.model.remote_files().items():
            info = infos.get(remote.hub_path)
            if info is None or getattr(info, "size", None) is None:
                raise SeedError(f"{remote.hub_path} is not on the hub")
            lfs = getattr(info, "lfs", None)
            listed.append(SourceFile(target, remote.hub_path, int(info.size), lfs.sha256 if lfs else None))
        return [*listed, hub_config_file(self.model)]

    def _paths_info(self) -> dict[str, Any]:
        """{hub path: RepoFile}, one request per repository."""
        from huggingface_hub import HfApi

        by_repo: dict[str, list[str]] = {}
        for remote in self.model.remote_files().values():
            by_repo.setdefault(remote.repo_id, []).append(remote.path)
        api = HfApi()
        found: dict[str, Any] = {}
        with hub_errors():
            for repo_id, paths in by_repo.items():
                for info in api.get_paths_info(repo_id, paths, expand=True):
                    found[f"{repo_id}/{info.path}"] = info
        return found

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        remote = self.model.remote_files()[file.target]
        return hub_download(remote.repo_id, remote.path, staging)


def hub_download(repo_id: str, path: str, staging: Path) -> Path:
    """One file of a hub repository, into `staging/hub/<repo id>/`, hub failures said as SeedError."""
    from huggingface_hub import hf_hub_download

    with hub_errors():
        return Path(hf_hub_download(repo_id, path, local_dir=staging / "hub" / repo_id))


def hub_source(volume: Volume, model: HubModel) -> HubSource:
    """A hub source whose downloads and caches all stay on the volume, not the container disk."""
    volume.apply_cache_environment(offline=False)
    return HubSource(model)


@dataclass(frozen=True)
class MirrorSource(FileByFile):
    """A local copy of the hub: `root/<repo id>/<path>`, digests optionally in `root/SHA256SUMS`."""

    root: Path
    model: HubModel

    @property
    def label(self) -> str:
        return f"the mirror {self.root}"

    def files(self) -> list[SourceFile]:
        digests = mirror_digests(self.root)
        listed = []
        for target, remote in self.model.remote_files().items():
            path = self.root / remote.hub_path
            if not path.is_file():
                raise SeedError(f"the mirror {self.root} has no {remote.hub_path}")
            listed.append(SourceFile(target, str(path), path.stat().st_size, digests.get(remote.hub_path)))
        return [*listed, hub_config_file(self.model)]

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        remote = self.model.remote_files()[file.target]
        return copy_into(self.root / remote.hub_path, staging / "hub" / remote.hub_path)


@dataclass(frozen=True)
class FolderSource(FileByFile):
    """Another model folder in our layout, e.g. on another volume; its SHA256SUMS is trusted if present."""

    folder: ModelFolder

    @property
    def label(self) -> str:
        return f"the model folder {self.folder.path}"

    def files(self) -> list[SourceFile]:
        missing = [rel for rel in MODEL_FILES if not (self.folder.path / rel).is_file()]
        if missing:
            raise SeedError(f"{self.folder.path} is not a complete model folder (missing {', '.join(missing)})")
        digests = source_checksums(self.folder)
        return [
            SourceFile(rel, str(self.folder.path / rel), (self.folder.path / rel).stat().st_size, digests.get(rel))
            for rel in MODEL_FILES
        ]

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        return copy_into(self.folder.path / file.target, staging / "folder" / file.target)


@dataclass(frozen=True)
class RandomSource:
    """A random-weight model built locally with the real classes by `build_random`: no network, noise not speech."""

    model: RandomModel

    @property
    def label(self) -> str:
        return f"build_random ({self.model.config['name']}, random weights)"

    @property
    def all_or_nothing(self) -> bool:
        # A rebuild made by newer code need not fit the config or vocab of an older one.
        return True

    def files(self) -> list[SourceFile]:
        weights = weights_bytes(self.model.config, len(read_vocab(wheel_vocab())))
        return [
            SourceFile(rel, self.label, None, None, size_hint=weights if rel == WEIGHTS else None)
            for rel in MODEL_FILES
        ]

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        build = ModelFolder(staging / "random")
        if not build.path.exists():
            build_random(build, self.model)
        return build.path / file.target


def random_model(arch: str, name: str) -> RandomModel:
    """F5-TTS's architecture `arch` (configs/<arch>.yaml) and the full-size mel Vocos, to fill with random weights."""
    section = f5tts_model_yaml(arch)
    if section.get("backbone") not in BACKBONES or section.get("mel_spec") != MEL_SPEC:
        raise SeedError(f"{arch} is not a {' or '.join(BACKBONES)} model with vocos mel settings {MEL_SPEC}: "
                        f"cannot build it")
    config = model_config(
        name, section["arch"], backbone=section["backbone"], random_weights=True, note=RANDOM_NOTE,
        source={"random": {"arch": f"f5_tts/configs/{arch}.yaml", "vocoder": f"{VOCODER_REPO} config.yaml"}},
    )
    return RandomModel(config, VOCOS_MEL_24KHZ)


def random_architectures() -> list[str]:
    """The F5-TTS architectures `random_model` can build (DiT or UNetT, vocos mel settings), from F5-TTS's own
    configs."""
    found = []
    for resource in sorted(package_files("f5_tts").joinpath("configs").iterdir(), key=lambda r: r.name):
        if resource.name.endswith(".yaml"):
            with contextlib.suppress(SeedError, KeyError, TypeError, yaml.YAMLError):
                arch = resource.name.removesuffix(".yaml")
                random_model(arch, arch)
                found.append(arch)
    return found


@dataclass(frozen=True)
class Fp16Copy:
    """Derives model.fp16.safetensors: every fp32 tensor exactly `tensor.half()`, so a GPU's audio is unchanged."""

    weights: Path

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        import torch
        from safetensors.torch import load_file, save_file

        dest = staging / "fp16" / file.target
        dest.parent.mkdir(parents=True, exist_ok=True)
        state = load_file(str(self.weights))
        save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}, str(dest))
        return dest


def mirror_digests(root: Path) -> dict[str, str]:
    """{`<repo id>/<path>`: SHA-256} from a mirror's optional SHA256SUMS (the model folder's format, so ModelFolder
    parses it)."""
    recorded = source_checksums(ModelFolder(root))
    return {path.removeprefix("./"): digest.lower() for path, digest in recorded.items()}


def source_checksums(folder: ModelFolder) -> dict[str, str]:
    """A source's SHA256SUMS; an unreadable one is an error, not a reason to skip verification."""
    try:
        return folder.recorded_checksums()
    except ValueError as exc:
        raise SeedError(f"{folder.checksums_file} is not in sha256sum format: {exc}") from exc


def copy_into(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
