"""The model folder on the volume: complete, intact, consistent with its config, and able to speak.

The weights check reads only the safetensors header (names and shapes) and fits
it to the architecture built on the meta device, with the loader's own
`load_exactly`: the same verdict the worker would reach, without reading 1.35 GB.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from processor.checks import Context, Verdict, failed, passed, seed_command, unseeded_fix
from processor.errors import ModelError
from processor.imports import lean_imports
from processor.model import (
    EMA_PREFIX,
    SKIPPED_KEYS,
    build_cfm,
    empty_weights,
    load_exactly,
    read_vocab,
    read_vocoder,
    unsupported_vocoder,
)
from processor.storage.volume import CHECKSUMS_FILE, MODEL_FILES

TEXT_EMBEDDING = "transformer.text_embed.text_embed.weight"  # one row per vocab entry, plus row 0 for padding
EXAMPLE_VOICE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "voices" / "narrator.wav"
SMOKE_TEXT = "The worker is ready."
SMOKE_STEPS = 4
FALLBACK_VOICE_TEXT = "A steady tone for the doctor's check."


def complete(ctx: Context) -> Verdict:
    folder = ctx.folder
    if not folder.path.is_dir():
        return failed(f"{folder.path} does not exist: the model {ctx.settings.model} is not seeded",
                      unseeded_fix(ctx.settings))
    missing = folder.missing_files()
    if missing:
        return failed(f"{folder.path} lacks {', '.join(missing)}", seed_command(ctx.settings))
    try:
        config = folder.config()
    except ValueError as exc:
        return failed(f"{folder.config_file} is not valid JSON: {exc}", seed_command(ctx.settings, fresh=True))
    refusal = unsupported_vocoder(config)
    if refusal:
        return failed(refusal, "seed a model with the Vocos vocoder (f5-batch seed --help lists them) and point "
                      "F5B_MODEL at it")
    note = "; random weights: noise, not speech" if config.get("random_weights") else ""
    return passed(f"{folder.path}: all {len(MODEL_FILES)} files and {CHECKSUMS_FILE} present{note}")


def checksums(ctx: Context) -> Verdict:
    folder = ctx.folder
    bad = folder.checksum_mismatches()
    if bad:
        verb = "does" if len(bad) == 1 else "do"
        return failed(f"{', '.join(bad)} {verb} not match {CHECKSUMS_FILE} (damaged or replaced since seeding)",
                      seed_command(ctx.settings))
    return passed(f"{len(folder.recorded_checksums())} files match {CHECKSUMS_FILE}")


def weights_files(ctx: Context) -> list[Path]:
    """The fp32 weights, and the fp16 copy a GPU worker reads instead, when there is one."""
    folder = ctx.folder
    return [path for path in (folder.weights, folder.weights_fp16) if path.is_file()]


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{state-dict key: shape} from a safetensors header, keys mapped as `read_cfm` maps them; no tensor is read."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = {key.removeprefix(EMA_PREFIX): tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    return {key: shape for key, shape in shapes.items() if key not in SKIPPED_KEYS}


def vocab(ctx: Context) -> Verdict:
    folder = ctx.folder
    entries = len(read_vocab(folder.vocab))
    for path in weights_files(ctx):
        rows = header_shapes(path).get(TEXT_EMBEDDING, (0,))[0]
        if rows != entries + 1:
            return failed(f"vocab.txt has {entries} entries but {path.name}'s text embedding has {rows} rows "
                          f"(expected {entries + 1}: one per entry plus padding): vocab and weights are of "
                          f"different models", seed_command(ctx.settings, fresh=True))
    return passed(f"{entries} entries, matching the weights' text embedding")


def weights(ctx: Context) -> Verdict:
    import torch

    folder = ctx.folder
    lean_imports()  # outside empty_weights, as read_cfm does: module-level tensors are made as usual
    try:
        with empty_weights():
            cfm = build_cfm(folder.config(), read_vocab(folder.vocab))
        for path in weights_files(ctx):
            state = {key: torch.empty(shape, device="meta") for key, shape in header_shapes(path).items()}
            load_exactly(cfm, state, path)
    except (ModelError, KeyError, TypeError) as exc:
        return failed(f"{exc}" if isinstance(exc, ModelError) else f"config.json cannot build the model: {exc!r}",
                      seed_command(ctx.settings, fresh=True))
    names = " and ".join(path.name for path in weights_files(ctx))
    return passed(f"{names}: {len(cfm.state_dict())} tensors, every key and shape as config.json's "
                  f"{folder.config().get('backbone')} needs")


def vocoder(ctx: Context) -> Verdict:
    try:
        loaded = read_vocoder(ctx.folder)
    except Exception as exc:  # any reason the vocoder cannot be built and filled is the finding
        return failed(f"vocos/ cannot be loaded: {type(exc).__name__}: {exc}", seed_command(ctx.settings, fresh=True))
    params = sum(p.numel() for p in loaded.parameters())
    return passed(f"Vocos loaded from vocos/config.yaml and pytorch_model.bin ({params / 1e6:.1f} M parameters)")


def smoke(ctx: Context) -> Verdict:
    """The worker's own path end to end: load (as at startup), prepare the example voice, synthesize a sentence."""
    try:
        with preserved_environ():
            outcome = synthesize_once(ctx)
    except Exception as exc:  # whatever breaks here would break every job
        return failed(f"{type(exc).__name__}: {exc}",
                      "every job would fail the same way: fix the error above (docs/troubleshooting.md lists "
                      "the usual causes), then run f5-batch doctor again")
    audio, load_s, synth_s, sample_rate = outcome
    if audio.size == 0 or not np.isfinite(audio).all() or not np.any(audio):
        return failed(f"synthesis returned {audio.size} samples, empty, silent or not finite",
                      "on a GPU try F5B_DEVICE=cpu to tell a broken fp16 model from broken weights; reseed with "
                      f"{seed_command(ctx.settings, fresh=True)}")
    note = "; random weights: noise, not speech" if ctx.folder.config().get("random_weights") else ""
    return passed(f"{audio.size / sample_rate:.2f} s of audio in {synth_s:.1f} s at {SMOKE_STEPS} steps "
                  f"(model loaded in {load_s:.1f} s{note})")


def synthesize_once(ctx: Context) -> tuple[Any, float, float, int]:
    """Audio, load seconds, synthesis seconds, sample rate."""
    from processor.app import load_synthesizer
    from processor.audio import prepare_voice
    from processor.synthesis import SynthesisRequest

    started = time.perf_counter()
    synthesizer = load_synthesizer(ctx.settings)
    loaded = time.perf_counter()
    ctx.settings.processing_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.settings.processing_dir, prefix=".f5-batch-doctor-") as scratch:
        clip, text = smoke_voice(Path(scratch))
        voice = prepare_voice(clip, text, Path(scratch))
        audio = synthesizer.synthesize(SynthesisRequest(SMOKE_TEXT, voice, seed=0, nfe_step=SMOKE_STEPS))
    return audio, loaded - started, time.perf_counter() - loaded, synthesizer.sample_rate


def smoke_voice(scratch: Path) -> tuple[Path, str]:
    """The example voice shipped with the repository; where only the package is installed, a generated tone."""
    transcript = EXAMPLE_VOICE.with_suffix(".txt")
    if EXAMPLE_VOICE.is_file() and transcript.is_file():
        return EXAMPLE_VOICE, transcript.read_text().strip()
    import soundfile as sf

    rate = 24000
    t = np.arange(2 * rate) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    sf.write(str(scratch / "tone.wav"), wave.astype(np.float32), rate)
    return scratch / "tone.wav", FALLBACK_VOICE_TEXT


@contextlib.contextmanager
def preserved_environ() -> Iterator[None]:
    """`load_synthesizer` points caches at the volume and turns the hub off, for good: doctor leaves no trace."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
