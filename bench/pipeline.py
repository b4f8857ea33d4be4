"""Pipelining: is the synthesizer ever left waiting for S3 and SQS?

    .venv/bin/python -m bench.pipeline [--jobs 24] [--steps 32] [--rounds 2]    # from the repository root

Starts moto on loopback (S3 + SQS with bucket notifications, as the test suite
does), builds the tiny model, and runs the same jobs four ways, in one process
with one loaded model:

- pure synthesis: the synthesizer alone on the prepared requests, no I/O at all;
- the worker with prefetch 0 (claim, fetch, synthesize, upload, one job at a time);
- the worker as configured by default (prefetch 2: fetch and upload overlap synthesis);
- the worker with synthesis switched off (a stand-in returning silence of the same
  length): the orchestration's own ceiling in jobs per second.

Each worker run drops fresh manifests into the S3 inbox (the notification puts
them on the queue) and times `Worker.run(once=True)` until the queue is empty
and every result is written. The ratio to pure synthesis is the claim: at most
1.1 with pipelining. Medians over the rounds.

moto runs on the same 2 cores: its request handling (AWS's machines' work in
production) counts against the worker here, as does the worker's own
client-side work (signing, JSON, encoding audio, logging).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from processor.app import build_worker, load_synthesizer
from processor.audio import prepare_voice
from processor.errors import F5BatchError
from processor.settings import Settings
from processor.synthesis import Rendered, SynthesisRequest, Synthesizer

from bench import common
from tests.support.aws import Endpoint, moto_server
from tests.support.paths import VOICE, VOICE_TEXT
from tests.support.results import read_s3_result
from tests.support.scenarios import QueueSetup, put_manifests, queue_setup
from tests.support.volumes import make_tiny_volume


@dataclass
class Silence:
    """Synthesis switched off: silence as long as the real audio was, so uploads keep their size."""

    lengths: dict[str, int]
    model_name: str = "silence"
    sample_rate: int = 24000
    max_batch: int = 1
    device: str = "cpu"

    def synthesize(self, request: SynthesisRequest) -> np.ndarray:
        return np.zeros(self.lengths.get(request.text, self.sample_rate), dtype=np.float32)

    def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[Rendered | F5BatchError]:
        return [Rendered((r.text,), (self.synthesize(r),)) for r in requests]


def pure_synthesis(synthesizer: Synthesizer, jobs: list[dict[str, Any]], tmp: Path) -> tuple[float, dict[str, int]]:
    # Keyed like the worker's prepared voices, so both sides reuse the voice's features alike.
    voice = prepare_voice(VOICE, VOICE_TEXT, tmp, key="bench-voice")
    requests = [SynthesisRequest(text=j["text"], voice=voice, seed=j["seed"], nfe_step=j["nfe_step"]) for j in jobs]
    synthesizer.synthesize(requests[0])  # warm-up, as the worker's first job is not timed either
    started = time.perf_counter()
    waves = [synthesizer.synthesize(r) for r in requests]
    seconds = time.perf_counter() - started
    return seconds, {r.text: len(w) for r, w in zip(requests, waves, strict=True)}


def worker_run(moto: Endpoint, setup: QueueSetup, settings: Settings, synthesizer: Any,
               jobs: list[dict[str, Any]], prefix: str) -> float:
    worker = build_worker(settings, synthesizer)
    put_manifests(moto.client("s3"), setup.inbox, {f"{prefix}-{i:03d}": job for i, job in enumerate(jobs)})
    started = time.perf_counter()
    taken = worker.run(once=True)
    seconds = time.perf_counter() - started
    s3 = moto.client("s3")
    statuses = [read_s3_result(s3, setup.outbox, f"{prefix}-{i:03d}")["status"] for i in range(len(jobs))]
    if taken != len(jobs) or statuses.count("succeeded") != len(jobs):
        raise SystemExit(f"{prefix}: {taken} jobs taken, statuses {statuses}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=32, help="sampling steps per job (F5-TTS's default: 32)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--publishing", action="store_true",
                        help="only the default worker and the same jobs publishing (loudness -16, m4a 96 kbit/s, "
                             "srt and vtt), in turn, their order swapped every round")
    args = parser.parse_args()
    jobs = common.manifests(args.jobs, args.steps)
    published = [{**job, **PUBLISHING} for job in jobs]
    with tempfile.TemporaryDirectory() as tmp_name, moto_server(Path(tmp_name) / "moto.log") as moto:
        tmp = Path(tmp_name)
        os.environ.update(moto.env())
        volume = make_tiny_volume(tmp / "volume")
        setup = queue_setup(moto, visibility_s=60)
        settings = Settings.model_validate({
            "inbox": f"s3://{setup.inbox}/inbox/", "outbox": f"s3://{setup.outbox}/", "queue": setup.queue_url,
            "s3_path_style": True, "volume": volume.root, "model": "tiny", "device": "cpu", "receive_wait_s": 0,
            "processing_dir": tmp / "processing", "lease_s": 60})
        synthesizer = load_synthesizer(settings)
        if args.publishing:
            return publishing(args, moto, setup, settings, synthesizer, jobs, published)
        runs: dict[str, list[float]] = {"pure": [], "sequential": [], "pipelined": [], "silence": []}
        for r in range(args.rounds):
            pure, lengths = pure_synthesis(synthesizer, jobs, tmp)
            runs["pure"].append(pure)
            sequential = replace_settings(settings, prefetch=0)
            runs["sequential"].append(worker_run(moto, setup, sequential, synthesizer, jobs, f"seq{r}"))
            runs["pipelined"].append(worker_run(moto, setup, settings, synthesizer, jobs, f"pipe{r}"))
            runs["silence"].append(worker_run(moto, setup, settings, Silence(lengths), jobs, f"off{r}"))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)
    print_table(args, {k: statistics.median(v) for k, v in runs.items()}, settings)
    return 0


# What a job asks to be publishable (issue 15): a loudness target, a lossy delivery format, both subtitle files.
PUBLISHING: dict[str, Any] = {"loudness": -16, "format": "m4a", "bitrate": 96, "subtitles": ["srt", "vtt"]}


def publishing(args: argparse.Namespace, moto: Endpoint, setup: QueueSetup, settings: Settings, synthesizer: Any,
               jobs: list[dict[str, Any]], published: list[dict[str, Any]]) -> int:
    """The default worker on the same jobs as they are and publishing, in turn: the cost of loudness, encoding
    and subtitles, which run on the output thread beside synthesis."""
    runs: dict[str, list[float]] = {"plain": [], "publishing": []}
    for r in range(args.rounds):
        order = [("plain", jobs), ("publishing", published)]
        for name, batch in order if r % 2 == 0 else reversed(order):
            runs[name].append(worker_run(moto, setup, settings, synthesizer, batch, f"{name}{r}"))
        ratio = runs["publishing"][-1] / runs["plain"][-1]
        print(f"round {r + 1}: plain {runs['plain'][-1]:.2f} s, publishing {runs['publishing'][-1]:.2f} s, "
              f"ratio {ratio:.3f}; {common.load_average()}", flush=True)
    ratios = [p / q for p, q in zip(runs["publishing"], runs["plain"], strict=True)]
    n = args.jobs
    plain, pub = statistics.median(runs["plain"]), statistics.median(runs["publishing"])
    rows = [("worker, prefetch 2, wav", n, plain, 1.0, n / plain),
            ("same jobs publishing: loudness -16, m4a 96k, srt + vtt", n, pub, statistics.median(ratios), n / pub)]
    print()
    print(f"Publishing, {common.machine()}")
    print(f"tiny model on CPU, {args.steps} steps, {n} jobs, moto S3+SQS on loopback, median of {args.rounds} "
          f"rounds (the ratio: median of each round's)")
    print()
    print(common.table(["run", "jobs", "wall s", "wall / plain", "jobs/s"], rows))
    return 0


def replace_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


def print_table(args: argparse.Namespace, median: dict[str, float], settings: Settings) -> None:
    n, pure = args.jobs, median["pure"]
    rows = [
        ("pure synthesis (no I/O)", n, pure, 1.0, n / pure),
        ("worker, prefetch 0 (one job at a time)", n, median["sequential"], median["sequential"] / pure,
         n / median["sequential"]),
        (f"worker, prefetch {settings.prefetch} (default)", n, median["pipelined"], median["pipelined"] / pure,
         n / median["pipelined"]),
        ("worker, synthesis switched off", n, median["silence"], median["silence"] / pure, n / median["silence"]),
    ]
    print()
    print(f"Pipelining, {common.machine()}")
    print(f"tiny model on CPU, {args.steps} steps, {n} jobs, moto S3+SQS on loopback, "
          f"median of {args.rounds} rounds")
    print()
    print(common.table(["run", "jobs", "wall s", "wall / pure synthesis", "jobs/s"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
