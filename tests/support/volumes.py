"""The tiny random models on a volume (`build_tiny`'s F5-TTS, `build_tiny_asr`'s Whisper): what the suite, the
benchmarks and the reliability report run the real F5-TTS and transformers classes on."""

from __future__ import annotations

from pathlib import Path

from processor.seeding.random_asr import TINY_ASR, build_tiny_asr
from processor.seeding.random_models import build_tiny
from processor.storage.volume import AsrFolder, ModelFolder, Volume


def build_tiny_model(folder: ModelFolder) -> ModelFolder:
    """The tiny model's files in `folder`, with their checksums, as a seeded volume holds them."""
    build_tiny(folder)
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
