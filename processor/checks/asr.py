"""The speech-recognition model, when one is seeded: complete, intact, and able to transcribe.

No ASR model is a valid setup (every voice then needs a transcript), so a volume
without `asr/<name>/` passes; a folder that is there but broken fails, because
the jobs that need it would.
"""

from __future__ import annotations

import time

import numpy as np

from processor.checks import SEED_COMMAND, Context, Verdict, failed, passed
from processor.checks.model import EXAMPLE_VOICE, preserved_environ
from processor.seeding.asr_sources import DEFAULT_ASR_REPO, asr_name
from processor.seeding.random_asr import TINY_ASR
from processor.storage.volume import CHECKSUMS_FILE, AsrFolder

SAMPLE_S = 1.0
NOT_SEEDED = "no ASR model: voices need a transcript"


def asr_folder(ctx: Context) -> AsrFolder:
    return ctx.volume.asr(ctx.settings.asr_model)


def asr_seed_command(ctx: Context) -> str:
    """The seed command that puts (or repairs) `settings.asr_model` on the volume."""
    name = ctx.settings.asr_model
    if name == TINY_ASR:
        source = "--tiny"
    elif name == asr_name(DEFAULT_ASR_REPO):
        source = "--asr"
    else:
        source = f"--asr-model openai/{name} (or the hub repository it came from)"
    return f"{SEED_COMMAND} --volume {ctx.settings.volume} {source}"


def complete(ctx: Context) -> Verdict:
    folder = asr_folder(ctx)
    if not folder.path.is_dir():
        return passed(f"{NOT_SEEDED} ({folder.path} does not exist; {asr_seed_command(ctx)} seeds one)")
    missing = folder.missing_files()
    if missing:
        return failed(f"{folder.path} lacks {', '.join(missing)}", asr_seed_command(ctx))
    bad = folder.checksum_mismatches()
    if bad:
        verb = "does" if len(bad) == 1 else "do"
        return failed(f"{', '.join(bad)} {verb} not match {CHECKSUMS_FILE} (damaged or replaced since seeding)",
                      asr_seed_command(ctx))
    note = "; random weights: gibberish transcripts" if folder.config().get("random_weights") else ""
    return passed(f"{folder.path}: {len(folder.recorded_checksums())} files match {CHECKSUMS_FILE}{note}")


def for_check(ctx: Context) -> Verdict:
    """F5B_CHECK asks every job for a listening check: without an ASR model each of them would fail."""
    if not ctx.settings.check:
        return passed("F5B_CHECK is off: only manifests that ask for it are checked")
    folder = asr_folder(ctx)
    if folder.missing_files():
        return failed(f"F5B_CHECK is on, and the listening check needs the ASR model {ctx.settings.asr_model}, "
                      f"which is not seeded at {folder.path}",
                      f"{asr_seed_command(ctx)}, or unset F5B_CHECK (--no-check)")
    return passed(f"F5B_CHECK is on: every job is heard by {ctx.settings.asr_model}")


def loadable(ctx: Context) -> Verdict:
    """Load the model as a job would (the configured device, the hub off) and transcribe a second of speech."""
    folder = asr_folder(ctx)
    if not folder.path.is_dir():
        return passed(f"{NOT_SEEDED}: nothing to load")
    from processor.model import pick_device
    from processor.transcription import WhisperTranscriber

    samples, rate = sample_audio()
    with preserved_environ():
        ctx.volume.apply_cache_environment(offline=True)
        device = pick_device(ctx.settings.device)
        transcriber = WhisperTranscriber(folder, device)
        started = time.perf_counter()
        transcriber.pipeline()
        loaded = time.perf_counter()
        text = transcriber.transcribe(samples, rate, language="en")
    return passed(f"{folder.name} loaded on {device} in {loaded - started:.1f} s; {SAMPLE_S:.0f} s of the example "
                  f"voice transcribed in {time.perf_counter() - loaded:.1f} s: {text[:60]!r}")


def sample_audio() -> tuple[np.ndarray, int]:
    """The first second of the example voice; where only the package is installed, a second of a tone."""
    if EXAMPLE_VOICE.is_file():
        import soundfile as sf

        data, rate = sf.read(str(EXAMPLE_VOICE), dtype="float32", frames=int(SAMPLE_S * 48000), always_2d=True)
        return data.mean(axis=1)[: int(SAMPLE_S * rate)], int(rate)
    rate = 16000
    t = np.arange(int(SAMPLE_S * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate
