"""What a seed command line asks for: the volume, the models (TTS, ASR or both), their names and their sources.

`--asr` / `--asr-model` alone seed only the ASR model; with a TTS flag (`--model`,
`--random`, `--fp16-copy`) both are seeded, the TTS model first, `--from` serving as
the mirror of both. `--tiny` always seeds both tiny models (models/tiny, asr/tiny).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, replace
from pathlib import Path

from processor.seeding.asr_sources import DEFAULT_ASR_REPO, AsrMirrorSource, TinyAsrSource, asr_hub_source, asr_name
from processor.seeding.checkpoints import CHECKPOINT_SUFFIXES, checkpoint_source, f5tts_architectures, is_checkpoint_dir
from processor.seeding.cli import DEFAULT_MODEL, RANDOM_SUFFIX, TINY_MODEL
from processor.seeding.flow import SeedReport, format_size
from processor.seeding.random_asr import TINY_ASR
from processor.seeding.random_models import TINY
from processor.seeding.sources import (
    HUB_MODELS,
    FolderSource,
    HubModel,
    MirrorSource,
    RandomSource,
    SeedError,
    Source,
    hub_source,
    random_model,
)
from processor.storage.volume import RUNPOD_VOLUME, ModelFolder, Volume

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class UsageError(Exception):
    """The command line asks for something impossible: exit status 2."""


@dataclass(frozen=True)
class Request:
    """What the command line resolved to."""

    volume: Volume
    name: str
    source: Source
    fp16_copy: bool = False
    asr: bool = False  # an ASR model: <volume>/asr/<name>, not models/<name>

    @property
    def folder(self) -> ModelFolder:
        return self.volume.asr(self.name) if self.asr else self.volume.model(self.name)

    @property
    def label(self) -> str:
        return f"asr/{self.name}" if self.asr else self.name


def resolve(args: argparse.Namespace) -> list[Request]:
    """Turn arguments into the models to seed (the TTS one first), or raise UsageError."""
    volume = resolve_volume(args.volume)
    wants_asr = bool(args.asr or args.asr_model)
    if args.tiny or (args.model == TINY_MODEL and args.source is None and args.random is None):
        if args.asr_model:
            raise UsageError(f"--tiny seeds the tiny ASR model asr/{TINY_ASR}; drop --asr-model {args.asr_model}")
        return [resolve_tts(volume, args), Request(volume, TINY_ASR, TinyAsrSource(), asr=True)]
    wants_tts = args.model is not None or args.random is not None or args.fp16_copy or not wants_asr
    tts = [resolve_tts(volume, args)] if wants_tts else []
    return [*tts, resolve_asr(volume, args.asr_model or DEFAULT_ASR_REPO, args.source)] if wants_asr else tts


def resolve_asr(volume: Volume, name: str, source: Path | None) -> Request:
    """A Whisper checkpoint of the hub (`openai/whisper-small`; a bare name means openai's), or --from a mirror."""
    repo_id = name if "/" in name else f"openai/{name}"
    if not REPO_ID.fullmatch(repo_id):
        raise UsageError(f"invalid ASR model {name!r}: give a hub repository id such as {DEFAULT_ASR_REPO}")
    if source is None:
        return Request(volume, asr_name(repo_id), asr_hub_source(volume, repo_id), asr=True)
    if not source.is_dir():
        raise UsageError(f"--from {source} is not a directory")
    return Request(volume, asr_name(repo_id), AsrMirrorSource(source, repo_id), asr=True)


def resolve_tts(volume: Volume, args: argparse.Namespace) -> Request:
    """The TTS model the arguments name (the default one when they name none)."""
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
        return replace(resolve_from(volume, args), fp16_copy=fp16)
    if args.name is not None or args.arch is not None or args.vocoder is not None:
        raise UsageError("--name, --arch and --vocoder seed a checkpoint: give its folder with --from DIR")
    name = args.model or DEFAULT_MODEL
    return Request(volume, name, hub_source(volume, known_model(name, "the hub")), fp16)


def resolve_volume(path: Path) -> Volume:
    """The volume root: a local folder that does not exist yet is created by the run, a missing network volume is not.

    Without its network volume, `/runpod-volume` on a pod is a folder like any other on
    the container disk: a model seeded there fills that disk and is lost with the pod.
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"volume {path} is not a directory")
    where = path.absolute()
    if not path.exists() and where.is_relative_to(RUNPOD_VOLUME) and not RUNPOD_VOLUME.is_dir():
        raise UsageError(
            f"volume {path}: the network volume is not mounted ({RUNPOD_VOLUME} does not exist); attach it to the "
            "pod, or give --volume a local folder: seeding into the container disk would be lost with the pod"
        )
    return Volume(path)


def resolve_random(volume: Volume, arch: str, name: str | None, fp16: bool) -> Request:
    target = valid_name(name or f"{arch}{RANDOM_SUFFIX}")
    try:
        return Request(volume, target, RandomSource(random_model(arch, target)), fp16)
    except SeedError as exc:
        raise UsageError(f"--random {arch}: {exc}") from exc


def resolve_from(volume: Volume, args: argparse.Namespace) -> Request:
    """A model folder of another volume, a fine-tune's checkpoint (DIR or the file itself), or a mirror."""
    source: Path = args.source
    if args.name is not None and args.model is not None and args.name != args.model:
        raise UsageError(f"--name {args.name} and --model {args.model} name two models: give one")
    name = args.name or args.model
    if source.is_file() and source.suffix in CHECKPOINT_SUFFIXES:
        return resolve_checkpoint(volume, args, name)
    if not source.is_dir():
        raise UsageError(f"--from {source} is not a directory")
    folder = ModelFolder(source)
    if args.arch is None and folder.config_file.is_file() and folder.weights.is_file():
        target = valid_name(name or source.resolve().name)
        if volume.model(target).path.resolve() == source.resolve():
            raise UsageError(f"--from {source} is the folder being seeded")
        return Request(volume, target, FolderSource(folder))
    if args.arch is not None or is_checkpoint_dir(source):
        return resolve_checkpoint(volume, args, name)
    model = known_model(name or DEFAULT_MODEL, f"the mirror {source}")
    return Request(volume, model.name, MirrorSource(source, model))


def resolve_checkpoint(volume: Volume, args: argparse.Namespace, name: str | None) -> Request:
    if name is None:
        raise UsageError(f"--from {args.source} holds a checkpoint: name its model with --name NAME")
    target = valid_name(name)
    if args.arch is not None and args.arch not in f5tts_architectures():
        raise UsageError(f"unknown --arch {args.arch!r}: F5-TTS's configs are {', '.join(f5tts_architectures())}")
    try:
        return Request(volume, target, checkpoint_source(args.source, target, args.arch, args.vocoder, volume))
    except SeedError as exc:
        raise UsageError(str(exc)) from exc


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
        return f"{request.label}: already seeded at {path} (SHA256SUMS verified); nothing fetched"
    return (
        f"{request.label}: seeded at {path} from {request.source.label}: "
        f"{len(report.fetched)} fetched ({format_size(report.bytes_fetched)}), {len(report.present)} already present"
    )
