"""The tiny random model (`processor.model.build_tiny`) on a volume: what the suite, the benchmarks and the
reliability report run the real F5-TTS classes on."""

from __future__ import annotations

from pathlib import Path

from processor.seeding.random_models import build_tiny
from processor.storage.volume import ModelFolder, Volume


def build_tiny_model(folder: ModelFolder) -> ModelFolder:
    """The tiny model's files in `folder`, with their checksums, as a seeded volume holds them."""
    build_tiny(folder)
    folder.write_checksums()
    return folder


def make_tiny_volume(root: Path) -> Volume:
    """A volume at `root` holding the tiny model under the name `tiny`."""
    volume = Volume(root)
    build_tiny_model(volume.model("tiny"))
    return volume
