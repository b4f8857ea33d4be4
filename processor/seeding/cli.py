"""`f5-batch seed` (and `scripts/seed_volume.py`): put one model on the volume from the command line.

`add_arguments` runs whenever `f5-batch` builds its parser, whatever the command, so
this module imports nothing of the seeding code at the top: `f5-batch run` and
`f5-batch health` never load it. `run` imports it when a model is seeded, and the
help imports the list of known models only when it is shown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from processor.storage.volume import FP16_WEIGHTS

if TYPE_CHECKING:
    from processor.seeding.flow import FreeSpace
    from processor.seeding.request import Request

DEFAULT_MODEL = "F5TTS_v1_Base"
TINY_MODEL = "tiny"
RANDOM_SUFFIX = "-random"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DESCRIPTION = ("Put a model on the volume (models/<name>/; with --asr a speech-recognition model, asr/<name>/)\n"
               "so the worker can run offline.")
DEFAULT_ASR_MODEL = "openai/whisper-large-v3-turbo"
KNOWN_MODELS = "{known models}"  # the epilog's placeholder: see SeedHelpFormatter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Make `parser` the seed command: its flags, its help, and itself as `args.seed_parser` for `run`."""
    parser.description = parser.description or DESCRIPTION
    parser.epilog = KNOWN_MODELS
    parser.formatter_class = SeedHelpFormatter
    parser.set_defaults(seed_parser=parser)
    parser.add_argument("--volume", required=True, type=Path,
                        help="the volume root, e.g. /runpod-volume (a local folder is created if missing)")
    parser.add_argument("--model", help=f"model name: a hub model listed below (default {DEFAULT_MODEL}), or tiny")
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="DIR",
        help="seed from DIR instead of the hub: a mirror in hub layout (DIR/<repo id>/<file>, "
        "optional DIR/SHA256SUMS), a model folder of another volume, or a fine-tune's checkpoint (a .pt or "
        ".safetensors, its vocab.txt, optionally its model config yaml; DIR may name the checkpoint file)",
    )
    parser.add_argument("--name", metavar="NAME",
                        help="the folder name (models/NAME) of a checkpoint seeded --from DIR; a manifest's "
                        "\"model\" names it")
    parser.add_argument(
        "--arch",
        metavar="ARCH",
        help="the F5-TTS architecture of a checkpoint --from DIR (e.g. F5TTS_v1_Base) when DIR has no model "
        "config yaml; with one, the yaml wins",
    )
    parser.add_argument(
        "--vocoder",
        metavar="NAME|DIR",
        help="for a checkpoint --from DIR: copy the vocoder from the seeded model NAME's vocos/, or from DIR "
        "(config.yaml, pytorch_model.bin); default: a seeded model with charactr/vocos-mel-24khz",
    )
    parser.add_argument("--tiny", action="store_true",
                        help="build the random-weight test models into models/tiny and asr/tiny (a tiny Whisper)")
    parser.add_argument(
        "--asr",
        action="store_true",
        help=f"seed the speech-recognition model ({DEFAULT_ASR_MODEL}, or --asr-model) into asr/<name>; "
        "alone it seeds only that, with --model/--random/--fp16-copy both (--from: the mirror of both)",
    )
    parser.add_argument("--asr-model", metavar="NAME",
                        help="another Whisper checkpoint of the hub (e.g. openai/whisper-small); implies --asr")
    parser.add_argument(
        "--random",
        metavar="ARCH",
        help="build a model with F5-TTS's architecture ARCH (e.g. F5TTS_v1_Base) and random weights of the real "
        f"shapes into models/ARCH{RANDOM_SUFFIX} (or --model NAME), offline: for benchmarks; noise, not speech",
    )
    parser.add_argument(
        "--fp16-copy",
        action="store_true",
        help=f"also write {FP16_WEIGHTS}, the weights in fp16: a GPU worker reads half the bytes",
    )


class SeedHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills in the epilog's list of known models when help is shown, not each time a parser is built."""

    def add_text(self, text: str | None) -> None:
        super().add_text(known_models() if text == KNOWN_MODELS else text)


def known_models() -> str:
    """The models `seed` can make: the hub's, the tiny test model, and the architectures `--random` builds."""
    from processor.seeding.sources import HUB_MODELS, random_architectures

    default = {DEFAULT_MODEL: "the default: "}
    hub = [f"  {name:<14} {default.get(name, '')}from the Hugging Face hub, or --from a mirror" for name in HUB_MODELS]
    return "\n".join([
        "models:",
        *hub,
        f"  {TINY_MODEL:<14} --tiny: the random-weight test model, offline (noise, not speech)",
        f"  {'ARCH' + RANDOM_SUFFIX:<14} --random ARCH: F5-TTS's architecture ARCH with random weights, offline;",
        f"  {'':<14} ARCH is one of {', '.join(random_architectures())}",
        f"  {'NAME':<14} --from DIR: a copy of the model folder DIR (NAME: its name, or --model NAME)",
        f"  {'NAME':<14} --from DIR --name NAME --arch ARCH: a fine-tune's checkpoint in DIR, its vocab.txt",
        f"  {'':<14} and model config yaml (then --arch may be left out); the vocoder from the volume",
        "",
        "ASR models (asr/<name>/, name: the repository's last part; F5B_ASR_MODEL picks one):",
        f"  {DEFAULT_ASR_MODEL.rsplit('/', 1)[-1]:<22} --asr: {DEFAULT_ASR_MODEL}, from the hub or --from a mirror",
        f"  {'NAME':<22} --asr-model openai/NAME: another Whisper checkpoint, the same ways",
        f"  {TINY_MODEL:<22} --tiny: a tiny Whisper with random weights, offline (gibberish transcripts)",
        "",
        "examples:",
        "  f5-batch seed --volume /runpod-volume                  # the default model, from the hub",
        "  f5-batch seed --volume ./volume --tiny                 # offline test models (TTS and ASR)",
        "  f5-batch seed --volume /runpod-volume --asr            # only the ASR model, from the hub",
        "  f5-batch seed --volume /runpod-volume --model F5TTS_v1_Base --asr   # both",
        "  f5-batch seed --volume /runpod-volume --from /mirror   # from a local mirror in hub layout",
        "  f5-batch seed --volume /runpod-volume --from ckpts/my_de --name de --arch F5TTS_v1_Base  # a fine-tune",
        "",
        "exit status:",
        f"  {EXIT_OK}    seeded, or already complete",
        f"  {EXIT_FAILED}    seeding failed (the line says why; run again to resume)",
        f"  {EXIT_USAGE}    a usage error (an unknown model, a missing /runpod-volume)",
        f"  {EXIT_INTERRUPTED}  interrupted: the model is not marked seeded",
    ])


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of `scripts/seed_volume.py`; `f5-batch seed` gets the same flags from `add_arguments`."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace, *, free_space: FreeSpace | None = None) -> int:
    """Seed the model `args` ask for; 0 on success, 1 on failure, 2 on a usage error. `free_space` is for tests."""
    from processor.seeding.flow import disk_free
    from processor.seeding.request import UsageError, resolve

    parser: argparse.ArgumentParser = args.seed_parser
    try:
        requests = resolve(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for request in requests:
        status = seed_one(request, free_space or disk_free)
        if status != EXIT_OK:
            return status
    return EXIT_OK


def seed_one(request: Request, free_space: FreeSpace) -> int:
    """Seed one model of the command line; its exit status."""
    from processor.seeding.flow import seed
    from processor.seeding.request import summary
    from processor.seeding.sources import SeedError

    try:
        request.volume.root.mkdir(parents=True, exist_ok=True)
        report = seed(request.folder, request.source, fp16_copy=request.fp16_copy, free_space=free_space)
    except SeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # disk full, permissions: the machine, not the code
        print(f"error: seeding {request.label} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"interrupted: {request.label} is not marked seeded; run again to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(request, report))
    if request.folder.config().get("random_weights"):
        makes = "gibberish transcripts" if request.asr else "noise, not speech"
        print(f"note: {request.label} has random weights: it produces {makes} (tests and offline checks only)")
    return EXIT_OK


def main(argv: list[str] | None = None, *, free_space: FreeSpace | None = None) -> int:
    """`scripts/seed_volume.py`: parse `argv` and seed; the exit statuses of `run`."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message (or the help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run(args, free_space=free_space)
