"""Seed a model folder on the volume: from the hub, a local mirror, another volume, or random weights.

The worker never touches the network, so everything it loads must be put on the
volume ahead of time, by this module. Every source goes through one flow:

1. a folder that is complete and matches its `SHA256SUMS` is left alone, without
   contacting the source at all (re-running is cheap and safe);
2. files already present and verified are kept, the rest are fetched;
3. free space is checked before the first byte is fetched;
4. files are fetched into a staging folder on the volume itself (same filesystem,
   so moving them into place is an atomic rename) and verified there;
5. they are moved into place and `SHA256SUMS` is written last, so an interrupted
   run never leaves a folder that looks complete.

On request the flow also derives `model.fp16.safetensors` from the verified weights
(`--fp16-copy`), and keeps it only while it matches them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from processor.model import (
    MEL_SPEC,
    RANDOM_NOTE,
    TINY,
    RandomModel,
    build_random,
    model_config,
    read_vocab,
    vocos_config,
    weights_bytes,
    wheel_vocab,
)
from processor.storage.volume import FP16_WEIGHTS, MODEL_FILES, ModelFolder, Volume, sha256_file

DEFAULT_MODEL = "F5TTS_v1_Base"
TINY_MODEL = "tiny"
F5TTS_REPO = "SWivid/F5-TTS"
VOCODER_REPO = "charactr/vocos-mel-24khz"
VOCODER_FILES = ("config.yaml", "pytorch_model.bin")
# charactr/vocos-mel-24khz's config.yaml: the vocoder every shipped F5-TTS vocos model uses.
VOCOS_MEL_24KHZ = vocos_config(dim=512, intermediate_dim=1536, num_layers=8)
RANDOM_SUFFIX = "-random"
WEIGHTS = "model.safetensors"

# Headroom for filesystem overhead and the hub's own metadata files in staging.
MIN_SPACE_MARGIN = 256 * 2**20
# Charged for each file whose size a source can neither tell nor estimate before making it.
UNKNOWN_SIZE_ALLOWANCE = 64 * 2**20
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

FreeSpace = Callable[[Path], int]
Fetch = Callable[["SourceFile", Path], Path]


class SeedError(Exception):
    """An expected failure: reported as one message on stderr, exit status 1, no traceback."""


class HubUnreachable(SeedError):
    """The hub cannot be reached; the message says how to seed without it."""


class UsageError(Exception):
    """The command line asks for something impossible: exit status 2."""


# --- where files come from ---------------------------------------------------------


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
class HubSource:
    """The Hugging Face hub. Build it with `hub_source()` so caches land on the volume."""

    model: HubModel

    @property
    def label(self) -> str:
        return f"the Hugging Face hub ({self.model.repo_id}, {VOCODER_REPO})"

    @property
    def all_or_nothing(self) -> bool:
        return False

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
        from huggingface_hub import hf_hub_download

        remote = self.model.remote_files()[file.target]
        with hub_errors():
            path = hf_hub_download(remote.repo_id, remote.path, local_dir=staging / "hub" / remote.repo_id)
        return Path(path)


def hub_source(volume: Volume, model: HubModel) -> HubSource:
    """A hub source whose downloads and caches all stay on the volume, not the container disk."""
    volume.apply_cache_environment(offline=False)
    return HubSource(model)


@dataclass(frozen=True)
class MirrorSource:
    """A local copy of the hub: `root/<repo id>/<path>`, digests optionally in `root/SHA256SUMS`."""

    root: Path
    model: HubModel

    @property
    def label(self) -> str:
        return f"the mirror {self.root}"

    @property
    def all_or_nothing(self) -> bool:
        return False

    def files(self) -> list[SourceFile]:
        digests = self._digests()
        listed = []
        for target, remote in self.model.remote_files().items():
            path = self.root / remote.hub_path
            if not path.is_file():
                raise SeedError(f"the mirror {self.root} has no {remote.hub_path}")
            listed.append(SourceFile(target, str(path), path.stat().st_size, digests.get(remote.hub_path)))
        return [*listed, hub_config_file(self.model)]

    def _digests(self) -> dict[str, str]:
        # The mirror's SHA256SUMS has the model folder's format, so ModelFolder parses it.
        recorded = source_checksums(ModelFolder(self.root))
        return {path.removeprefix("./"): digest.lower() for path, digest in recorded.items()}

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        remote = self.model.remote_files()[file.target]
        return copy_into(self.root / remote.hub_path, staging / "hub" / remote.hub_path)


@dataclass(frozen=True)
class FolderSource:
    """Another model folder in our layout, e.g. on another volume; its SHA256SUMS is trusted if present."""

    folder: ModelFolder

    @property
    def label(self) -> str:
        return f"the model folder {self.folder.path}"

    @property
    def all_or_nothing(self) -> bool:
        return False

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
    if section.get("backbone") != "DiT" or section.get("mel_spec") != MEL_SPEC:
        raise SeedError(f"{arch} is not a DiT model with vocos mel settings {MEL_SPEC}: cannot build it")
    config = model_config(
        name, section["arch"], backbone=section["backbone"], random_weights=True, note=RANDOM_NOTE,
        source={"random": {"arch": f"f5_tts/configs/{arch}.yaml", "vocoder": f"{VOCODER_REPO} config.yaml"}},
    )
    return RandomModel(config, VOCOS_MEL_24KHZ)


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


# --- the seeding flow ----------------------------------------------------------------


@dataclass
class SeedReport:
    """What one run did, for the summary line and for tests that must prove nothing was fetched."""

    folder: ModelFolder
    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes_fetched: int = 0

    @property
    def already_seeded(self) -> bool:
        return not self.fetched


def disk_free(path: Path) -> int:
    """The real free-space probe; `seed` takes another so tests can simulate a full disk."""
    return shutil.disk_usage(path).free


def seed(
    folder: ModelFolder,
    source: Source,
    *,
    fp16_copy: bool = False,
    free_space: FreeSpace = disk_free,
    out: TextIO | None = None,
) -> SeedReport:
    """Make `folder` complete and verified from `source`, fetching only what is missing.

    With `fp16_copy`, also derive model.fp16.safetensors from the weights; a complete
    folder that only lacks it gets it without the source being contacted.
    """
    out = out or sys.stdout
    report = SeedReport(folder)
    seeded = is_seeded(folder)
    if seeded and (folder.weights_fp16.is_file() or not fp16_copy):
        for rel in (*MODEL_FILES, *folder.optional_files()):
            report_present(report, rel, out)
        return report

    to_fetch = [] if seeded else plan(folder, source, report, out)
    fp16 = plan_fp16(folder, to_fetch, fp16_copy, report, out)
    check_free_space(folder, [*to_fetch, *([fp16] if fp16 else [])], free_space)
    staging = staging_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)  # left over by a run that was killed
    try:
        staging.mkdir(parents=True)
        fetched = {file.target: fetch_verified(source.fetch, file, staging, report, out) for file in to_fetch}
        if fp16 is not None:
            derive = Fp16Copy(fetched.get(WEIGHTS, folder.weights)).fetch
            fetched[FP16_WEIGHTS] = fetch_verified(derive, fp16, staging, report, out)
        install(folder, fetched, staging, keep_fp16=FP16_WEIGHTS in report.present)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def plan(folder: ModelFolder, source: Source, report: SeedReport, out: TextIO) -> list[SourceFile]:
    """The source's files that the folder lacks (or holds damaged); those it holds intact are reported present."""
    wanted = source.files()
    recorded = target_checksums(folder)
    keep = {file.target for file in wanted if is_present(folder, file, recorded)}
    if source.all_or_nothing and len(keep) < len(wanted):
        keep = set()
    for target in sorted(keep):
        report_present(report, target, out)
    return [file for file in wanted if file.target not in keep]


def plan_fp16(
    folder: ModelFolder, to_fetch: list[SourceFile], wanted: bool, report: SeedReport, out: TextIO
) -> SourceFile | None:
    """The fp16 copy to derive in this run, if any. A copy is kept only if recorded and made from the kept weights."""
    weights = next((file for file in to_fetch if file.target == WEIGHTS), None)
    copy = SourceFile(FP16_WEIGHTS, f"{WEIGHTS}, converted to fp16", None, None)
    if weights is None and is_present(folder, copy, target_checksums(folder)):
        report_present(report, FP16_WEIGHTS, out)
        return None
    if not wanted:
        return None
    fp32_bytes = folder.weights.stat().st_size if weights is None else weights.size or weights.size_hint
    return SourceFile(copy.target, copy.origin, None, None, size_hint=fp32_bytes // 2 if fp32_bytes else None)


def is_seeded(folder: ModelFolder) -> bool:
    """Complete and matching SHA256SUMS: then the source is not even contacted (works offline)."""
    try:
        return folder.is_complete()
    except ValueError:  # a garbled SHA256SUMS: the folder is simply not verified
        return False


def target_checksums(folder: ModelFolder) -> dict[str, str]:
    try:
        return folder.recorded_checksums()
    except ValueError:
        return {}


def is_present(folder: ModelFolder, file: SourceFile, recorded: dict[str, str]) -> bool:
    """True when the folder already holds `file`: right size, and the source's (else the recorded) digest."""
    path = folder.path / file.target
    if not path.is_file():
        return False
    if file.size is not None and path.stat().st_size != file.size:
        return False
    expected = file.sha256 or recorded.get(file.target)
    return expected is not None and sha256_file(path) == expected.lower()


def check_free_space(folder: ModelFolder, to_fetch: list[SourceFile], free_space: FreeSpace) -> None:
    """Fail before fetching rather than fill the volume halfway through a multi-GB download."""
    if not to_fetch:
        return
    payload = sum(expected_size(file) for file in to_fetch)
    needed = payload + max(MIN_SPACE_MARGIN, payload // 20)
    where = existing_ancestor(folder.path)
    free = free_space(where)
    if free < needed:
        raise SeedError(
            f"not enough free space on {where}: need {needed} bytes ({format_size(needed)}: "
            f"{format_size(payload)} to fetch plus margin), only {free} bytes ({format_size(free)}) free"
        )


def expected_size(file: SourceFile) -> int:
    if file.size is not None:
        return file.size
    return UNKNOWN_SIZE_ALLOWANCE if file.size_hint is None else file.size_hint


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent: disk_usage needs a path that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def staging_dir(folder: ModelFolder) -> Path:
    """On the volume, next to the folder: same filesystem, so os.replace into place is atomic."""
    return folder.path.parent / f".staging-{folder.name}"


def fetch_verified(fetch: Fetch, file: SourceFile, staging: Path, report: SeedReport, out: TextIO) -> Path:
    """Fetch (or write, for generated files) one file into staging and verify it there, before it is used."""
    if file.content is not None:
        path = staging / "generated" / file.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)
    else:
        path = fetch(file, staging)
    verify(file, path)
    size = path.stat().st_size
    report.fetched.append(file.target)
    report.bytes_fetched += size
    print(f"  fetched  {file.target:<24} {format_size(size):>10}  from {file.origin}", file=out, flush=True)
    return path


def verify(file: SourceFile, path: Path) -> None:
    """Check what the source promised; a size check alone still catches truncated non-LFS downloads."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise SeedError(f"{file.target} from {file.origin}: expected {file.size} bytes, got {size}")
    if file.sha256 is None:
        return
    actual = sha256_file(path)
    if actual != file.sha256.lower():
        raise SeedError(
            f"{file.target} from {file.origin} is corrupt: expected sha256 {file.sha256.lower()}, got {actual}"
        )


def install(folder: ModelFolder, fetched: dict[str, Path], staging: Path, *, keep_fp16: bool = False) -> None:
    """Move verified files into place and write SHA256SUMS last.

    An fp16 copy neither made nor verified in this run is removed: it may be of
    other weights, and SHA256SUMS would otherwise vouch for it.
    """
    if not folder.path.exists():
        install_new(folder, fetched, staging)
        return
    # Until the new record is written the folder must not look complete, even to a check that skips hashing.
    folder.checksums_file.unlink(missing_ok=True)
    if not keep_fp16 and FP16_WEIGHTS not in fetched:
        folder.weights_fp16.unlink(missing_ok=True)
    move_files(folder, fetched)
    folder.write_checksums()


def install_new(folder: ModelFolder, fetched: dict[str, Path], staging: Path) -> None:
    """A fresh folder is assembled in staging and renamed into place: it appears whole or not at all."""
    assembled = ModelFolder(staging / "assembled" / folder.name)
    move_files(assembled, fetched)
    assembled.write_checksums()
    folder.path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(assembled.path, folder.path)


def move_files(folder: ModelFolder, fetched: dict[str, Path]) -> None:
    for target, path in fetched.items():
        dest = folder.path / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)


def report_present(report: SeedReport, target: str, out: TextIO) -> None:
    report.present.append(target)
    size = format_size((report.folder.path / target).stat().st_size)
    print(f"  present  {target:<24} {size:>10}", file=out)


def format_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), len(SIZE_UNITS) - 1)
    return f"{size / 1024**exponent:.1f} {SIZE_UNITS[exponent]}"


# --- command line ----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the command line resolved to."""

    volume: Volume
    name: str
    source: Source
    fp16_copy: bool = False

    @property
    def folder(self) -> ModelFolder:
        return self.volume.model(self.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Put a model on the volume (models/<name>/) so the worker can run offline.",
    )
    parser.add_argument("--volume", required=True, type=Path, help="the volume root, e.g. /runpod-volume")
    parser.add_argument(
        "--model",
        help=f"model name: one of {', '.join(HUB_MODELS)} (default {DEFAULT_MODEL}), or tiny",
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="DIR",
        help="seed from DIR instead of the hub: a mirror in hub layout (DIR/<repo id>/<file>, "
        "optional DIR/SHA256SUMS) or a model folder of another volume",
    )
    parser.add_argument("--tiny", action="store_true", help="build the random-weight test model into models/tiny")
    parser.add_argument(
        "--random",
        metavar="ARCH",
        help="build a model with F5-TTS's architecture ARCH (e.g. F5TTS_v1_Base) and random weights of the real "
        f"shapes into models/ARCH{RANDOM_SUFFIX} (or --model NAME), offline: for benchmarks; noise, not speech",
    )
    parser.add_argument(
        "--fp16-copy",
        action="store_true",
        help=f"also write {FP16_WEIGHTS}, the weights in fp16: a GPU worker reads half the bytes",
    )
    return parser


def resolve(args: argparse.Namespace) -> Request:
    """Turn arguments into a volume, a model name and a source, or raise UsageError."""
    if not args.volume.is_dir():
        raise UsageError(f"volume {args.volume} is not a directory (mount it, or create it for local use)")
    volume = Volume(args.volume)
    fp16 = bool(args.fp16_copy)
    if args.tiny + (args.random is not None) + (args.source is not None) > 1:
        raise UsageError("--tiny and --random build a model locally; combine neither with the other nor with --from")
    if args.tiny and args.model not in (None, TINY_MODEL):
        raise UsageError(f"--tiny always seeds models/{TINY_MODEL}; drop --model {args.model}")
    if args.tiny or (args.model == TINY_MODEL and args.source is None and args.random is None):
        return Request(volume, TINY_MODEL, RandomSource(TINY), fp16)
    if args.random is not None:
        return resolve_random(volume, args.random, args.model, fp16)
    if args.source is not None:
        return replace(resolve_from(volume, args.source, args.model), fp16_copy=fp16)
    name = args.model or DEFAULT_MODEL
    return Request(volume, name, hub_source(volume, known_model(name, "the hub")), fp16)


def resolve_random(volume: Volume, arch: str, name: str | None, fp16: bool) -> Request:
    target = valid_name(name or f"{arch}{RANDOM_SUFFIX}")
    try:
        return Request(volume, target, RandomSource(random_model(arch, target)), fp16)
    except SeedError as exc:
        raise UsageError(f"--random {arch}: {exc}") from exc


def resolve_from(volume: Volume, source: Path, name: str | None) -> Request:
    if not source.is_dir():
        raise UsageError(f"--from {source} is not a directory")
    folder = ModelFolder(source)
    if folder.config_file.is_file() and folder.weights.is_file():
        target = valid_name(name or source.resolve().name)
        if volume.model(target).path.resolve() == source.resolve():
            raise UsageError(f"--from {source} is the folder being seeded")
        return Request(volume, target, FolderSource(folder))
    model = known_model(name or DEFAULT_MODEL, f"the mirror {source}")
    return Request(volume, model.name, MirrorSource(source, model))


def known_model(name: str, where: str) -> HubModel:
    if name not in HUB_MODELS:
        raise UsageError(
            f"unknown model {name!r} for {where}: known models are {', '.join(HUB_MODELS)}; "
            f"use --tiny for the offline test model, or --from a model folder"
        )
    return HUB_MODELS[name]


def valid_name(name: str) -> str:
    """Model names become folder names on the volume: no separators, no dot-files."""
    if not MODEL_NAME.fullmatch(name):
        raise UsageError(f"invalid model name {name!r}: use letters, digits, '_', '-', '.'")
    return name


def summary(request: Request, report: SeedReport) -> str:
    path = request.folder.path
    if report.already_seeded:
        return f"{request.name}: already seeded at {path} (SHA256SUMS verified); nothing fetched"
    return (
        f"{request.name}: seeded at {path} from {request.source.label}: "
        f"{len(report.fetched)} fetched ({format_size(report.bytes_fetched)}), {len(report.present)} already present"
    )


def main(argv: list[str] | None = None, *, free_space: FreeSpace = disk_free) -> int:
    """Seed one model; 0 on success, 1 on failure, 2 on a usage error. `free_space` is for tests."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        request = resolve(args)
    except SystemExit as exc:  # argparse has printed its usage message
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = seed(request.folder, request.source, fp16_copy=request.fp16_copy, free_space=free_space)
    except SeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions: the machine, not the code
        print(f"error: seeding {request.name} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {request.name} is not marked seeded; run again to finish", file=sys.stderr)
        return 130
    print(summary(request, report))
    if request.folder.config().get("random_weights"):
        print("note: this model has random weights: it produces noise, not speech (tests and offline checks only)")
    return 0
