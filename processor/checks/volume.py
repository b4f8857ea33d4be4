"""The volume (models and caches) and the processing folder (job scratch): there, writable, big enough."""

from __future__ import annotations

import os

from processor.checks import (
    Context,
    Verdict,
    failed,
    is_known_model,
    passed,
    probe_file,
    seed_command,
    warned,
    where_mounted,
)
from processor.model import read_vocab, weights_bytes
from processor.seeding.cli import RANDOM_SUFFIX, TINY_MODEL
from processor.seeding.flow import MIN_SPACE_MARGIN, check_free_space, format_size
from processor.seeding.random_models import TINY, wheel_vocab
from processor.seeding.sources import (
    HUB_MODELS,
    WEIGHTS,
    RandomSource,
    SeedError,
    SourceFile,
    hub_model_config,
    random_model,
)
from processor.storage.volume import MODEL_FILES, RUNPOD_VOLUME

SET_VOLUME = "set F5B_VOLUME (or --volume) to where the network volume is mounted"


def mounted(ctx: Context) -> Verdict:
    volume = ctx.settings.volume
    if volume.is_dir():
        return passed(f"{volume} {where_mounted(volume)}")
    if ctx.on_pod or volume == RUNPOD_VOLUME:
        hint = (f"attach a network volume to the pod (RunPod mounts it at {RUNPOD_VOLUME}), or {SET_VOLUME}")
    elif is_known_model(ctx.settings.model):
        hint = f"{SET_VOLUME}, or seed one for local use: {seed_command(ctx.settings)} (creates {volume})"
    else:
        hint = f"{SET_VOLUME}, or create {volume} for local use"
    return failed(f"{volume} does not exist or is not a folder", hint)


def writable(ctx: Context) -> Verdict:
    try:
        probe_file(ctx.settings.volume, ctx.identity)
    except OSError as exc:
        return failed(f"cannot write to {ctx.settings.volume}: {exc.strerror or exc}",
                      "mount the volume read-write, and run as a user that may write to it")
    return passed(f"created and deleted a file in {ctx.settings.volume}")


def separate_disk(ctx: Context) -> Verdict:
    """On the container's own disk, models fill it and vanish with the pod: the failure this command exists for."""
    volume, root = ctx.settings.volume, ctx.container_root
    if os.stat(volume).st_dev != os.stat(root).st_dev:
        return passed(f"{volume} is not on the container disk ({root} is {where_mounted(root)})")
    detail = f"{volume} is on the same filesystem as the container disk {root} ({where_mounted(root)})"
    if ctx.on_pod or volume == RUNPOD_VOLUME:
        return failed(detail + ": models would fill it and be lost with the pod",
                      f"attach a network volume (RunPod mounts it at {RUNPOD_VOLUME}), or {SET_VOLUME}")
    return warned(detail + " (fine for local use, wrong on a pod)",
                  "on a pod, attach a network volume and point F5B_VOLUME at it")


def volume_free_space(ctx: Context) -> Verdict:
    """A seeded volume needs only headroom; an unseeded one needs room for the model, as `f5-batch seed` counts it."""
    volume, folder = ctx.settings.volume, ctx.folder
    free = ctx.free_space(volume)
    if not folder.missing_files():  # present is enough here; model.checksums verifies them
        if free < MIN_SPACE_MARGIN:
            return warned(f"{format_size(free)} free on {volume}: nearly full (the model is seeded, the worker "
                          f"writes nothing here, but another model or an fp16 copy will not fit)",
                          "remove unused models under models/, or grow the network volume")
        return passed(f"{format_size(free)} free on {volume}; {folder.name} is seeded")
    try:
        check_free_space(folder, model_files_to_fetch(ctx), ctx.free_space)
    except SeedError as exc:
        return failed(f"{exc} for {folder.name}",
                      f"grow the network volume or remove unused models under {ctx.volume.models_dir}")
    return passed(f"{format_size(free)} free on {volume}: enough to seed {folder.name}")


def model_files_to_fetch(ctx: Context) -> list[SourceFile]:
    """What `f5-batch seed` would still have to fetch, with the sizes it would count (estimates from shapes)."""
    name = ctx.settings.model
    files = [SourceFile(rel, "", None, None) for rel in MODEL_FILES]  # unknown: each gets the seed command's allowance
    try:
        if name == TINY_MODEL:
            files = RandomSource(TINY).files()
        elif name in HUB_MODELS:
            size = weights_bytes(hub_model_config(HUB_MODELS[name]), len(read_vocab(wheel_vocab())))
            files = [SourceFile(rel, "", None, None, size_hint=size if rel == WEIGHTS else None) for rel in MODEL_FILES]
        elif name.endswith(RANDOM_SUFFIX):
            files = RandomSource(random_model(name.removesuffix(RANDOM_SUFFIX), name)).files()
    except SeedError:
        pass
    return [file for file in files if not (ctx.folder.path / file.target).is_file()]


def processing_writable(ctx: Context) -> Verdict:
    folder = ctx.settings.processing_dir
    try:
        probe_file(folder, ctx.identity)
    except OSError as exc:
        return failed(f"cannot write to {folder}: {exc.strerror or exc}",
                      "set F5B_PROCESSING_DIR (or --processing-dir) to a writable folder on a local disk")
    return passed(f"created and deleted a file in {folder} {where_mounted(folder)}")


def processing_free_space(ctx: Context) -> Verdict:
    folder, needed = ctx.settings.processing_dir, ctx.settings.processing_min_free_bytes
    free = ctx.free_space(folder)
    if free < needed:
        return failed(f"{format_size(free)} free under {folder}; jobs need {format_size(needed)} "
                      f"(F5B_PROCESSING_MIN_FREE_BYTES): every job would fail with processing_disk_full",
                      "free space there, set F5B_PROCESSING_DIR to a bigger disk (a larger container disk on RunPod), "
                      "or lower F5B_PROCESSING_MIN_FREE_BYTES")
    return passed(f"{format_size(free)} free under {folder} (jobs need {format_size(needed)})")

