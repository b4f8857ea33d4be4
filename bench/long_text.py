"""Long texts: does a job's time grow in proportion to its text, up to the manifest's 50,000 characters?

    .venv/bin/python -m bench.long_text [--sizes 5000 20000 50000] [--steps 2] [--rounds 2] [--threads 1]

Builds the tiny model and runs one job of English prose per size through the worker (a local inbox,
`Worker.run(once=True)`: chunking, sampling, the cross-fade join, the WAV write), in one process with one loaded
model, the sizes in turn in every round (ascending, then descending). It prints seconds per 1,000 characters for
each size and the ratio of the largest to the smallest: at most 1.3 is the claim. Beside them in the same rounds,
F5-TTS's own `infer_process` on the smallest text (its chunks on a thread pool, its join); and once, the
cross-fade join alone for the chunks of the largest text: F5-TTS's loop, which concatenates everything joined so
far again for every chunk, against the worker's. Medians over the rounds; the load average (`uptime`) is printed
with each round, as CPU time is shared on the development machines.

Both sides sample without guidance (cfg_strength 0: one transformer pass a step instead of two, which halves the
run and leaves the chunking, join and write as they are) and, by default, on one core: one torch thread, and
F5-TTS's thread pool one chunk at a time. On a shared 2-core machine torch's OpenMP threads wait on each other
whenever another process holds a core, and the same job's time then swung two- to fivefold from one size to the
next (`--threads 0` keeps torch's default and F5-TTS's pool).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from processor.app import build_worker, load_synthesizer
from processor.audio import prepare_voice
from processor.settings import Settings
from processor.storage.volume import ModelFolder, Volume
from processor.synthesis import cross_fade, max_chunk_chars
from processor.text import chunk_text

from bench import common
from tests.support.manifests import manifest
from tests.support.paths import REPO, VOICE, VOICE_TEXT
from tests.support.results import read_result
from tests.support.volumes import build_tiny_model

CROSS_FADE_S = 0.15


def prose(chars: int) -> str:
    """`chars` characters of sentences (cut at a sentence end), varied enough that no two chunks are the same."""
    sentences: list[str] = []
    length, i = 0, 0
    while length < chars:
        sentence = f"{common.job_text(i)[:-1]}, said voice number {i}."
        sentences.append(sentence)
        length += len(sentence) + 1
        i += 1
    return " ".join(sentences)[:chars].rsplit(".", 1)[0] + "."


def run_worker(settings: Settings, synthesizer: Any, text: str, steps: int) -> float:
    inbox, outbox = Path(settings.inbox), Path(settings.outbox)
    shutil.rmtree(outbox, ignore_errors=True)
    (inbox / "voices").mkdir(parents=True, exist_ok=True)
    shutil.copy(VOICE, inbox / "voices" / "narrator.wav")
    path = inbox / "long.json"
    path.write_text(json.dumps(manifest(text, nfe_step=steps, cfg_strength=0.0, seed=1, cross_fade=CROSS_FADE_S)))
    os.utime(path, (time.time() - 60, time.time() - 60))  # dropped a while ago: no wait for the copy to settle
    worker = build_worker(settings, synthesizer)
    started = time.perf_counter()
    worker.run(once=True)
    seconds = time.perf_counter() - started
    result = read_result(outbox, "long")
    if result["status"] != "succeeded":
        raise SystemExit(f"worker: {result['error']}")
    return seconds


def upstream(folder: ModelFolder, one_thread: bool) -> Any:
    """F5-TTS's `infer_process` on the tiny model, loaded by F5-TTS's own `load_model` and `load_vocoder`;
    with `one_thread`, its pool samples one chunk at a time, on one core as the worker does."""
    from concurrent.futures import ThreadPoolExecutor

    import f5_tts.infer.utils_infer as ui
    from f5_tts.model import DiT

    if one_thread:
        ui.ThreadPoolExecutor = lambda *args, **kwargs: ThreadPoolExecutor(max_workers=1)

    model = ui.load_model(DiT, folder.config()["arch"], str(folder.weights), vocab_file=str(folder.vocab),
                          device="cpu")
    vocoder = ui.load_vocoder(is_local=True, local_path=str(folder.vocoder_dir), device="cpu")
    ref_file, ref_text = ui.preprocess_ref_audio_text(str(VOICE), VOICE_TEXT, show_info=_quiet)

    def infer(text: str, steps: int) -> float:
        started = time.perf_counter()
        with open(os.devnull, "w") as devnull, redirect_stdout(devnull):  # it prints every chunk
            ui.infer_process(ref_file, ref_text, text, model, vocoder, show_info=_quiet, progress=None,
                             nfe_step=steps, cfg_strength=0.0, cross_fade_duration=CROSS_FADE_S, device="cpu")
        return time.perf_counter() - started

    return infer


def _quiet(*args: Any, **kwargs: Any) -> None:
    """F5-TTS reports every step through `show_info`."""


def f5_tts_join(waves: list[np.ndarray], seconds: float, sample_rate: int) -> np.ndarray:
    """F5-TTS 1.1.22's cross-fade loop (infer_batch_process)."""
    final = waves[0]
    for wave in waves[1:]:
        n = min(int(seconds * sample_rate), len(final), len(wave))
        faded = final[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
        final = np.concatenate([final[:-n], faded, wave[n:]])
    return final


def joins(text: str, tmp: Path) -> tuple[int, float, float]:
    """The largest text's chunks as noise of their estimated lengths, joined both ways: chunks, seconds each."""
    voice = prepare_voice(VOICE, VOICE_TEXT, tmp)
    chunks = chunk_text(text, max_chunk_chars(voice, 1.0))
    frames_per_byte = voice.duration_s * 24000 / 256 / len(voice.text.encode("utf-8"))
    rng = np.random.default_rng(0)
    waves = [rng.uniform(-0.1, 0.1, int(len(c.encode("utf-8")) * frames_per_byte) * 256).astype(np.float32)
             for c in chunks]
    timed = []
    for join in (f5_tts_join, cross_fade):
        started = time.perf_counter()
        join(waves, CROSS_FADE_S, 24000)
        timed.append(time.perf_counter() - started)
    return len(chunks), timed[0], timed[1]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.long_text", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--volume", type=Path, default=REPO / "bench" / ".volume")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    volume = Volume(args.volume)
    volume.apply_cache_environment(offline=True)
    folder = volume.model("tiny")
    if folder.missing_files():
        build_tiny_model(folder)
    texts = {size: prose(size) for size in args.sizes}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = Settings.model_validate({
            "inbox": str(tmp / "inbox"), "outbox": str(tmp / "outbox"), "volume": volume.root, "model": "tiny",
            "device": "cpu", "processing_dir": tmp / "processing", "job_timeout_s": 3600})
        synthesizer = load_synthesizer(settings)
        infer = upstream(folder, one_thread=args.threads == 1)
        smallest = min(args.sizes)
        run_worker(settings, synthesizer, prose(500), args.steps)  # warm-up, on both sides
        infer(prose(500), args.steps)
        ours: dict[int, list[float]] = {size: [] for size in args.sizes}
        theirs: list[float] = []
        loads: list[str] = []
        for r in range(args.rounds):
            loads.append(common.load_average())
            print(f"round {r + 1}, {loads[-1]}", flush=True)
            for size in sorted(args.sizes, reverse=r % 2 == 1):
                ours[size].append(run_worker(settings, synthesizer, texts[size], args.steps))
                print(f"  worker, {size} characters: {ours[size][-1]:.1f} s", flush=True)
            theirs.append(infer(texts[smallest], args.steps))
            print(f"  F5-TTS infer_process, {smallest} characters: {theirs[-1]:.1f} s", flush=True)
        largest = max(args.sizes)
        chunks, their_join, our_join = joins(texts[largest], tmp)
    print_table(args, ours, statistics.median(theirs), loads, (largest, chunks, their_join, our_join))
    return 0


def print_table(args: argparse.Namespace, ours: dict[int, list[float]], theirs: float, loads: list[str],
                join: tuple[int, int, float, float]) -> None:
    per_k = {size: statistics.median(times) / size * 1000 for size, times in ours.items()}
    smallest = min(per_k)
    rows: list[tuple[Any, ...]] = [(f"worker, {size:,} characters", statistics.median(ours[size]), per_k[size],
                                    per_k[size] / per_k[smallest]) for size in sorted(per_k)]
    rows.append((f"F5-TTS infer_process, {smallest:,} characters", theirs, theirs / smallest * 1000,
                 theirs / smallest * 1000 / per_k[smallest]))
    largest, chunks, their_join, our_join = join
    print()
    print(f"Long texts, {common.machine()}")
    threads = args.threads or "torch's default"
    print(f"tiny model on CPU ({threads} thread), {args.steps} steps, no guidance, English prose in the example voice, "
          f"median of {args.rounds} rounds; {'; '.join(loads)}")
    print()
    print(common.table(["run", "wall s", "s per 1,000 characters", "vs worker at the smallest"], rows))
    print()
    print(f"seconds per 1,000 characters, highest / lowest of the sizes: "
          f"**{max(per_k.values()) / min(per_k.values()):.2f}** (claim: at most 1.3)")
    print(f"cross-fade join alone, the {chunks} chunks of {largest:,} characters: F5-TTS's loop {their_join:.2f} s, "
          f"the worker's {our_join:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
