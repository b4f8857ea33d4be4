"""Cold start: from process start to ready to take a job, the worker versus F5-TTS's own `F5TTS(...)`.

    .venv/bin/python -m bench.cold_start [--volume bench/.volume] [--repeat 3] [--nfe-step 8]  # from the repo root

Seeds (once; later runs find it seeded) the full-size F5TTS_v1_Base architecture
with random weights of the real shapes (`f5-batch seed --random`), so it
runs offline. Then, alternating which side goes first, each repetition starts two
fresh Python processes on the same files:

- F5-TTS: `from f5_tts.api import F5TTS`, then `F5TTS(model="F5TTS_v1_Base",
  ckpt_file=..., vocab_file=..., vocoder_local_path=..., device="cpu")` with the hub
  off and its caches in a temporary folder; first job: `F5TTS.infer(...)`.
- the worker: what `f5-batch run` does up to "ready to take a job": import its
  entry module, build `Settings`, `processor.app.load_synthesizer` (cache
  environment, imports, weights, device transfer); first job: prepare the voice and
  synthesize, as a job does.

Times are measured from process start: the parent reads the wall clock just
before it spawns the child and hands it over, so both sides include the
interpreter's own start-up and are measured by the same clock. Time to ready is
imports plus construction (F5-TTS) or imports plus `load_synthesizer` (worker).
The weights are read from the page cache after the first run (warm, for both
sides alike); on a network volume a cold read adds the same bytes to both.
Medians over the repetitions; the ratios are the claim, absolute times drift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO, VOICE

ARCH = "F5TTS_v1_Base"
MODEL = f"{ARCH}-random"
# The example clip's first sentence ends at ~3.0 s (silence until 3.4 s): a short voice keeps the first job short.
VOICE_SECONDS = 3.2
VOICE_TEXT = "The quick brown fox jumps over the lazy dog."
JOB_TEXT = "Hello from the cold start benchmark."
SEED = 1234
RESULT = "COLD_START_RESULT "
T0_ENV = "COLD_START_T0"


# --- the two sides, each in a fresh process ------------------------------------------------


def child_f5tts(args: argparse.Namespace, t0: float) -> dict[str, float]:
    """F5-TTS's own API, as its README shows it, on the seeded files."""
    from f5_tts.api import F5TTS

    imported = time.time()
    folder = args.volume / "models" / MODEL
    tts = F5TTS(model=ARCH, ckpt_file=str(folder / "model.safetensors"), vocab_file=str(folder / "vocab.txt"),
                vocoder_local_path=str(folder / "vocos"), device=args.device)
    ready = time.time()
    tts.infer(ref_file=str(args.voice), ref_text=VOICE_TEXT, gen_text=JOB_TEXT, nfe_step=args.nfe_step, seed=SEED,
              show_info=lambda *_: None)
    done = time.time()
    return {"imports": imported - t0, "weights": ready - imported, "ready": ready - t0, "first_job": done - ready}


def child_worker(args: argparse.Namespace, t0: float) -> dict[str, float]:
    """The worker's start-up path (`f5-batch run` up to its first job), then one job's voice and synthesis."""
    import processor.cli  # noqa: F401  (the `f5-batch` entry module: what a pod starts by importing)
    from processor.app import load_synthesizer
    from processor.audio import prepare_voice
    from processor.settings import Settings
    from processor.synthesis import SynthesisRequest

    imported = time.time()
    # as `f5-batch run` passes them
    overrides: dict[str, Any] = {"volume": args.volume, "model": MODEL, "device": args.device}
    synthesizer = load_synthesizer(Settings(**overrides))
    ready = time.time()
    # F5Synthesizer keeps its LoadedModel; the Synthesizer protocol does not promise one.
    load = synthesizer.model.timings  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as workdir:
        voice = prepare_voice(args.voice, VOICE_TEXT, Path(workdir))
        synthesizer.synthesize(SynthesisRequest(text=JOB_TEXT, voice=voice, seed=SEED, nfe_step=args.nfe_step))
    done = time.time()
    return {"imports": imported - t0 + load.imports_s, "weights": load.weights_s, "device": load.device_s,
            "ready": ready - t0, "first_job": done - ready}


def run_child(side: str, args: argparse.Namespace) -> None:
    t0 = float(os.environ[T0_ENV])
    marks = child_f5tts(args, t0) if side == "f5tts" else child_worker(args, t0)
    print(RESULT + json.dumps(marks), flush=True)


# --- the parent: seed, alternate, summarise ------------------------------------------------


@dataclass(frozen=True)
class Side:
    key: str
    label: str


SIDES = (Side("f5tts", "F5-TTS `F5TTS(...)`"), Side("worker", "f5-batch worker"))


def seed_model(volume: Path) -> None:
    """`f5-batch seed` itself, as a user runs it; a second run finds the folder complete and builds nothing."""
    command = [sys.executable, "-m", "processor", "seed", "--volume", str(volume), "--random", ARCH]
    subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)


def make_voice(volume: Path) -> Path:
    """The example clip's first sentence, as a wav next to the model (not in the inbox: no user data here)."""
    import soundfile as sf

    path = volume / "bench" / "voice.wav"
    if not path.is_file():
        samples, rate = sf.read(str(VOICE), dtype="float32")
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), samples[: int(VOICE_SECONDS * rate)], rate)
    return path


def spawn(side: Side, args: argparse.Namespace, voice: Path, caches: Path) -> dict[str, float]:
    """One fresh process; the clock starts just before it is spawned."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(caches / "hf"), "TORCH_HOME": str(caches / "torch"),
           "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "bench.cold_start", "--child", side.key, "--volume", str(args.volume),
               "--voice", str(voice), "--nfe-step", str(args.nfe_step), "--device", args.device]
    env[T0_ENV] = repr(time.time())
    out = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{side.key} run failed ({out.returncode}):\n{out.stderr[-4000:]}")
    marks: dict[str, float] = json.loads(lines[-1].removeprefix(RESULT))
    return marks


def measure(args: argparse.Namespace, voice: Path) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {side.key: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as caches:
        for rep in range(args.repeat):
            order = SIDES if rep % 2 == 0 else SIDES[::-1]
            for side in order:
                marks = spawn(side, args, voice, Path(caches))
                runs[side.key].append(marks)
                shown = ", ".join(f"{k} {v:.2f} s" for k, v in marks.items())
                print(f"  run {rep + 1}/{args.repeat} {side.key:<6} {shown}", file=sys.stderr, flush=True)
    return runs


def median(runs: list[dict[str, float]], key: str) -> float | None:
    values = [run[key] for run in runs if key in run]
    return statistics.median(values) if values else None


def seconds(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.2f} s"


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    columns = ("imports", "weights", "device", "ready", "first_job")
    headers = ("", "imports", "weights (read + build)", "device transfer", "time to ready",
               f"first job ({args.nfe_step} steps)")
    rows = [[side.label, *(seconds(median(runs[side.key], c), "(in weights)") for c in columns)] for side in SIDES]
    ratio = {c: _ratio(median(runs["worker"], c), median(runs["f5tts"], c)) for c in ("ready", "first_job")}
    rows.append(["worker / F5-TTS", "", "", "", f"**{ratio['ready']}** (target ≤ 0.5)", ratio["first_job"]])
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([machine_line(args), "", *lines])


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return "n/a" if numerator is None or not denominator else f"{numerator / denominator:.2f}"


def machine_line(args: argparse.Namespace) -> str:
    import torch

    cpu = platform.machine()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return (
        f"Cold start, {time.strftime('%Y-%m-%d')}, {cpu} ({len(os.sched_getaffinity(0))} CPUs), device {args.device}, "
        f"torch {torch.__version__}, Python {platform.python_version()}: {ARCH} architecture with random "
        f"weights (1.35 GB fp32), warm page cache, medians of {args.repeat} alternating runs, "
        f"first job {VOICE_SECONDS} s voice + one sentence"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--volume", type=Path, default=REPO / "bench" / ".volume", help="model volume (reused)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (alternating)")
    parser.add_argument("--nfe-step", type=int, default=8, help="sampling steps of the first job")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: both sides load onto it")
    parser.add_argument("--child", choices=[side.key for side in SIDES], help=argparse.SUPPRESS)
    parser.add_argument("--voice", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    args.volume = args.volume.resolve()
    if args.child:
        run_child(args.child, args)
        return
    seed_model(args.volume)
    runs = measure(args, make_voice(args.volume))
    print(report(runs, args))


if __name__ == "__main__":
    main()
