"""Throughput: the same jobs through F5-TTS's own per-job loop and through the worker, in one run.

    .venv/bin/python -m bench.throughput [--model tiny|F5TTS_v1_Base] [--jobs 16] [--steps 32]
                                         [--device auto] [--max-batch 0] [--rounds 2]

(a) F5-TTS: `F5TTS.infer(ref_file, ref_text, gen_text, nfe_step=..., seed=..., file_wave=...)` once per
    job, the loop its API and CLI run. With the full-size model it is `F5TTS(...)` built from the
    volume's files; with `tiny` (which F5TTS's constructor cannot build: it only knows its bundled
    configs) the same `infer` method runs on the model and vocoder loaded by F5-TTS's own
    `load_model` and `load_vocoder`.
(b) the worker: the same manifests dropped into a local inbox, `Worker.run(once=True)` to an empty
    inbox, with the worker's defaults (prefetch; cross-job batching on a GPU) or `--max-batch`.

Model loading is outside the timing on both sides (see bench/cold_start.py). Both sides get one
untimed warm-up job. The table (printed last) gives jobs, seconds of audio, wall seconds, the
real-time factor (wall / audio) and the worker's throughput relative to F5-TTS's.
The volume (`--volume`, default bench/.volume) must hold the model: the tiny one is built on the
spot; the full-size one comes from `f5-batch seed --random` (`bench/gpu.sh` does that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf

from processor.app import build_worker, load_synthesizer
from processor.settings import Settings
from processor.storage.volume import ModelFolder, Volume

from bench import common
from tests.support.paths import REPO, VOICE
from tests.support.results import read_result
from tests.support.volumes import build_tiny_model


def upstream(folder: ModelFolder, device: str) -> Any:
    """F5-TTS's own inference object for the model folder, loaded by F5-TTS's own code."""
    from f5_tts.api import F5TTS

    config = folder.config()
    if folder.name != "tiny":
        return F5TTS(model=f5tts_config_name(folder), ckpt_file=str(folder.weights), vocab_file=str(folder.vocab),
                     vocoder_local_path=str(folder.vocoder_dir), device=device)
    from f5_tts.infer.utils_infer import load_model, load_vocoder
    from f5_tts.model import DiT

    f5 = F5TTS.__new__(F5TTS)
    f5.mel_spec_type, f5.target_sample_rate, f5.device = "vocos", 24000, device
    f5.vocoder = load_vocoder("vocos", True, str(folder.vocoder_dir), device)
    f5.ema_model = load_model(DiT, config["arch"], str(folder.weights), mel_spec_type="vocos",
                              vocab_file=str(folder.vocab), device=device)
    return f5


def f5tts_config_name(folder: ModelFolder) -> str:
    """F5-TTS's config of the folder's architecture: the folder's name, or for a random model its source."""
    random_arch = folder.config().get("source", {}).get("random", {}).get("arch")
    return Path(random_arch).stem if random_arch else folder.name


def run_upstream(f5: Any, jobs: list[dict[str, Any]], out: Path) -> tuple[float, float]:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i, job in enumerate(jobs):
        f5.infer(str(VOICE), job["voice_text"], job["text"], show_info=_quiet, nfe_step=job["nfe_step"],
                 seed=job["seed"], file_wave=str(out / f"{i:03d}.wav"))
    seconds = time.perf_counter() - started
    return seconds, sum(sf.info(str(p)).duration for p in out.glob("*.wav"))


def _quiet(*args: Any, **kwargs: Any) -> None:
    """F5-TTS prints every step's details through `show_info`."""


def run_worker(settings: Settings, synthesizer: Any, jobs: list[dict[str, Any]], tmp: Path) -> tuple[float, float]:
    inbox, outbox = Path(settings.inbox), Path(settings.outbox)
    shutil.rmtree(outbox, ignore_errors=True)
    (inbox / "voices").mkdir(parents=True, exist_ok=True)
    shutil.copy(VOICE, inbox / "voices" / "narrator.wav")
    for i, job in enumerate(jobs):
        path = inbox / f"job-{i:03d}.json"
        path.write_text(json.dumps(job))
        os.utime(path, (time.time() - 60, time.time() - 60))  # dropped a while ago: no wait for the copy to settle
    worker = build_worker(settings, synthesizer)
    started = time.perf_counter()
    taken = worker.run(once=True)
    seconds = time.perf_counter() - started
    results = [read_result(outbox, f"job-{i:03d}") for i in range(len(jobs))]
    if taken != len(jobs) or any(r["status"] != "succeeded" for r in results):
        raise SystemExit(f"worker: {taken} jobs taken; {[r.get('error') for r in results if r.get('error')]}")
    return seconds, sum(r["duration_s"] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a model seeded on the volume")
    parser.add_argument("--volume", type=Path, default=REPO / "bench" / ".volume")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-batch", type=int, default=0, help="the worker's F5B_MAX_BATCH (0: its default)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    volume = Volume(args.volume)
    volume.apply_cache_environment(offline=True)
    folder = volume.model(args.model)
    if args.model == "tiny" and folder.missing_files():
        build_tiny_model(folder)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = Settings.model_validate({
            "inbox": str(tmp / "inbox"), "outbox": str(tmp / "outbox"), "volume": volume.root, "model": args.model,
            "device": args.device, "max_batch": args.max_batch, "processing_dir": tmp / "processing"})
        synthesizer = load_synthesizer(settings)
        device = synthesizer.model.device  # type: ignore[attr-defined]
        f5 = upstream(folder, device)
        jobs = common.manifests(args.jobs, args.steps)
        run_upstream(f5, jobs[:1], tmp / "warm-up")
        run_worker(settings.model_copy(update={"outbox": str(tmp / "warm-up-out")}), synthesizer, jobs[:1], tmp)
        (tmp / "inbox").mkdir(exist_ok=True)
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for r in range(args.rounds):
            theirs.append(run_upstream(f5, jobs, tmp / f"upstream-{r}"))
            ours.append(run_worker(settings, synthesizer, jobs, tmp))
            print(f"round {r + 1}: F5-TTS {theirs[-1][0]:.2f} s, worker {ours[-1][0]:.2f} s", flush=True)
    print_table(args, theirs, ours, device, synthesizer.max_batch)
    return 0


def print_table(args: argparse.Namespace, theirs: list[tuple[float, float]], ours: list[tuple[float, float]],
                device: str, max_batch: int) -> None:
    a_wall, b_wall = statistics.median(t for t, _ in theirs), statistics.median(t for t, _ in ours)
    a_audio, b_audio = theirs[0][1], ours[0][1]
    rows = [
        ("(a) F5-TTS, F5TTS.infer per job", args.jobs, a_audio, a_wall, a_wall / a_audio, 1.0),
        (f"(b) f5-batch worker, max_batch {max_batch}", args.jobs, b_audio, b_wall, b_wall / b_audio,
         a_wall / b_wall),
    ]
    print()
    print(f"Throughput, {common.machine()}")
    print(f"model {args.model} on {device}, {args.steps} steps, {args.jobs} jobs, median of {args.rounds} rounds")
    print()
    print(common.table(["run", "jobs", "audio s", "wall s", "RTF", "throughput vs (a)"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
