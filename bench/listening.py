"""The listening check's cost: ASR time as a ratio of synthesis time, and the wall time it adds to a run.

    .venv/bin/python -m bench.listening [--volume DIR --model NAME --asr-model NAME] [--device cpu|cuda]
                                        [--jobs 6] [--steps 32] [--rounds 3] [--threads 1]

The same jobs (short texts of one to three chunks in the example voice, each with its transcript, fixed seeds)
through the worker three ways in every round, in one process with one loaded model and one loaded ASR model:
(1) no check; (2) `"check": true`, measure only: one ASR pass per chunk, no retakes; (3) `"max_wer": 0` with
`"on_check_fail": "keep"`: a chunk the ASR model does not hear word for word is synthesized once more and heard
again (F5B_CHECK_ATTEMPTS 2), the check's worst case. The order of the three turns from round to round. Each run
is a local inbox drained by `Worker.run(once=True)`. Per variant it prints medians over the rounds of the wall
time, the synthesizer's calls, the sums of `timings.synth` and `timings.asr` over the jobs' results, and two
ratios: ASR over synthesis (the check's cost) and the wall time over the run without a check. The load average
(`uptime`) is printed with each round, as CPU time is shared on the development machines.

Synthesis time is the synthesizer's calls, timed around them: with one job per call (CPU, F5B_MAX_BATCH 1) that is
the sum of `timings.synth`, but in a batch every job's `timings.synth` holds the whole call. The check runs on the
output thread, beside the next jobs' synthesis on the main thread: the wall time shows how much of it overlaps.
Loading either model is outside the timing (one untimed warm-up run of each variant; the worker itself loads
its ASR model on the first job that needs it).

By default it builds the tiny F5-TTS and the tiny random Whisper (`seed --tiny`'s) in a temporary volume and runs
on one CPU core (`--threads 0`: torch's default). Those figures measure the check's mechanism (resampling, the
ASR pipeline, scoring, the retake's round trip through the batching), not a real Whisper's cost: the random
Whisper emits a few tokens in a fraction of a second. With `--volume` holding a seeded checkpoint
(`f5-batch seed --asr`, `--model F5TTS_v1_Base`, `--asr-model whisper-large-v3-turbo`) the same run measures the
real ratio; a real model's chunks may pass at max_wer 0, and the "retaken" column says how many did not.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from processor.app import build_worker, load_synthesizer
from processor.errors import F5BatchError
from processor.settings import Settings
from processor.storage.volume import Volume
from processor.synthesis import Rendered, SynthesisRequest, Synthesizer
from processor.transcription import Transcriber, load_transcriber

from bench import common
from tests.support.manifests import manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.results import read_result
from tests.support.volumes import build_tiny_asr_model, build_tiny_model

VARIANTS: dict[str, dict[str, Any]] = {
    "no check": {},
    "check, measure only": {"check": True},
    "check, max_wer 0, keep (retakes)": {"max_wer": 0, "on_check_fail": "keep"},
}
SENTENCES = (1, 4, 7)  # one, two and three text chunks in the example voice (~200 bytes each)


def texts(count: int) -> list[str]:
    """`count` job texts of one to three chunks, each starting at its own sentence."""
    return [" ".join(common.job_text(i + j) for j in range(SENTENCES[i % len(SENTENCES)])) for i in range(count)]


@dataclass
class ClockedSynthesizer:
    """The loaded synthesizer, with its calls' wall time added up: in a batch, every job's `timings.synth` is the
    whole call's."""

    inner: Synthesizer
    model_name: str = field(init=False)
    sample_rate: int = field(init=False)
    max_batch: int = field(init=False)
    device: str = field(init=False)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.model_name, self.sample_rate = self.inner.model_name, self.inner.sample_rate
        self.max_batch, self.device = self.inner.max_batch, self.inner.device

    def synthesize(self, request: SynthesisRequest) -> np.ndarray:
        return self.inner.synthesize(request)

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> list[Rendered | F5BatchError]:
        started = time.perf_counter()
        try:
            return self.inner.synthesize_batch(requests)
        finally:
            self.seconds += time.perf_counter() - started


@dataclass(frozen=True)
class Run:
    """One variant's run: its wall time, its synthesizer calls, and what the jobs' results add up to."""

    wall: float
    calls: float
    synth: float
    asr: float
    chunks: int  # chunks heard by the check (0: no check)
    retaken: int

    @property
    def asr_per_synth(self) -> float:
        return self.asr / self.calls


def run_worker(settings: Settings, synthesizer: ClockedSynthesizer, transcriber: Transcriber,
               jobs: list[dict[str, Any]]) -> Run:
    inbox, outbox = Path(settings.inbox), Path(settings.outbox)
    shutil.rmtree(outbox, ignore_errors=True)
    (inbox / "voices").mkdir(parents=True, exist_ok=True)
    shutil.copy(VOICE, inbox / "voices" / "narrator.wav")
    names = [f"job-{i:03d}" for i in range(len(jobs))]
    for name, job in zip(names, jobs, strict=True):
        write_manifest(inbox, name, job)
    worker = build_worker(settings, synthesizer)
    worker.transcriber = transcriber  # the one loaded ASR model: a worker's own would load on its first check
    synthesizer.seconds = 0.0
    started = time.perf_counter()
    taken = worker.run(once=True)
    wall = time.perf_counter() - started
    results = [read_result(outbox, name) for name in names]
    if taken != len(jobs) or any(r["status"] != "succeeded" for r in results):
        raise SystemExit(f"worker: {taken} jobs taken; {[r.get('error') for r in results if r.get('error')]}")
    checks = [r["check"] for r in results if r["check"]]
    return Run(wall, synthesizer.seconds, sum(r["timings"]["synth"] for r in results),
               sum(r["timings"]["asr"] for r in results), sum(c["chunks"] for c in checks),
               sum(c["retaken"] for c in checks))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listening", description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=Path, help="a seeded volume (default: the tiny models, built in a temp one)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--asr-model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        # Before torch is imported: the ASR model runs on the output thread, whose OpenMP pool torch.set_num_threads
        # (which sets the calling thread's) does not reach.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        volume = Volume(args.volume or tmp / "volume")
        volume.apply_cache_environment(offline=True)
        if args.model == "tiny" and volume.model("tiny").missing_files():
            build_tiny_model(volume.model("tiny"))
        if args.asr_model == "tiny" and volume.asr("tiny").missing_files():
            build_tiny_asr_model(volume.asr("tiny"))
        settings = Settings.model_validate({
            "inbox": str(tmp / "inbox"), "outbox": str(tmp / "outbox"), "volume": volume.root, "model": args.model,
            "asr_model": args.asr_model, "device": args.device, "processing_dir": tmp / "processing",
            "job_timeout_s": 3600})
        synthesizer = ClockedSynthesizer(load_synthesizer(settings))
        # Every take over max_wer logs a warning: hundreds of lines in the worst case's runs, none of them news.
        logging.getLogger("f5batch").setLevel(logging.ERROR)
        transcriber = load_transcriber(volume, args.asr_model, synthesizer.device)
        if transcriber is None:
            raise SystemExit(f"no ASR model {args.asr_model} on the volume {volume.root}: seed one with "
                             f"`f5-batch seed --volume {volume.root} --asr`")
        jobs = [manifest(text, nfe_step=args.steps, seed=i) for i, text in enumerate(texts(args.jobs))]
        for fields in VARIANTS.values():  # warm-up: loads the ASR model, first calls on both sides
            run_worker(settings, synthesizer, transcriber, [{**jobs[0], **fields}])
        runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
        loads: list[str] = []
        for r in range(args.rounds):
            loads.append(common.load_average())
            print(f"round {r + 1}, {loads[-1]}", flush=True)
            names = list(VARIANTS)
            for name in names[r % len(names):] + names[:r % len(names)]:
                runs[name].append(run_worker(settings, synthesizer, transcriber,
                                             [{**job, **VARIANTS[name]} for job in jobs]))
                done = runs[name][-1]
                print(f"  {name}: wall {done.wall:.2f} s, synthesis {done.calls:.2f} s, ASR {done.asr:.2f} s, "
                      f"{done.retaken} of {done.chunks} chunks retaken", flush=True)
    print_table(args, runs, synthesizer, loads)
    return 0


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def print_table(args: argparse.Namespace, runs: dict[str, list[Run]], synthesizer: ClockedSynthesizer,
                loads: list[str]) -> None:
    baseline = runs["no check"]
    rows = []
    for name, done in runs.items():
        rows.append((name, done[0].chunks, done[0].retaken, median(d.wall for d in done),
                     median(d.calls for d in done), median(d.synth for d in done), median(d.asr for d in done),
                     median(d.asr_per_synth for d in done),
                     median(d.wall / b.wall for d, b in zip(done, baseline, strict=True))))
    print()
    print(f"Listening check, {common.machine()}")
    threads = args.threads or "torch's default"
    print(f"model {args.model}, ASR {args.asr_model}, on {synthesizer.device} ({threads} thread), max_batch "
          f"{synthesizer.max_batch}, {args.steps} steps, {args.jobs} jobs of 1-3 chunks, median of {args.rounds} "
          f"rounds; {'; '.join(loads)}")
    print()
    print(common.table(["run", "chunks heard", "retaken", "wall s", "synthesis s", "sum timings.synth s",
                        "sum timings.asr s", "asr / synthesis", "wall / no check"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
