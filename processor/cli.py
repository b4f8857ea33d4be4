"""The `f5-batch` command: run the worker, submit manifests, print the schema."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from processor import __version__
from processor.errors import F5BatchError, ModelError
from processor.manifest import parse_manifest, schema_text
from processor.settings import Settings
from processor.storage.local import LocalVoices

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f5-batch", description="Batch text-to-speech with F5-TTS.")
    parser.add_argument("--version", action="version", version=f"f5-batch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="take manifests from the inbox and write results to the outbox")
    run.add_argument("--inbox", help="inbox folder (F5B_INBOX)")
    run.add_argument("--outbox", help="outbox folder (F5B_OUTBOX)")
    run.add_argument("--volume", type=Path, help="model volume (F5B_VOLUME)")
    run.add_argument("--model", help="model name on the volume (F5B_MODEL)")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N (F5B_DEVICE)")
    run.add_argument("--processing-dir", type=Path, help="scratch folder for job files (F5B_PROCESSING_DIR)")
    run.add_argument("--log-format", choices=["json", "text"], help="log lines as JSON or text (F5B_LOG_FORMAT)")
    run.add_argument("--once", action="store_true", help="process what is in the inbox, then exit")

    submit = commands.add_parser("submit", help="validate manifests and drop them (and their voices) into the inbox")
    submit.add_argument("files", nargs="+", type=Path)
    submit.add_argument("--inbox", required=True, type=Path)

    validate = commands.add_parser("validate", help="check manifests without running them")
    validate.add_argument("files", nargs="+", type=Path)

    commands.add_parser("schema", help="print the manifest JSON Schema")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "submit": cmd_submit, "validate": cmd_validate, "schema": cmd_schema}[args.command]
    return handler(args)


def settings_from(args: argparse.Namespace) -> Settings:
    names = ("inbox", "outbox", "volume", "model", "device", "processing_dir", "log_format")
    overrides: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return Settings(**overrides)


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"f5-batch: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    from processor.app import build_worker
    from processor.logs import configure, logger

    configure(settings.log_format)
    try:
        worker = build_worker(settings)
    except ModelError as exc:
        logger.error(str(exc), extra={"stage": "startup", "code": exc.code})
        return EXIT_FAILED
    handled = worker.run(once=args.once)
    logger.info(f"inbox drained: {handled} manifest(s) handled", extra={"stage": "exit", "handled": handled})
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    inbox: Path = args.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    failed = 0
    for file in args.files:
        try:
            manifest = parse_manifest(file.read_bytes(), file.stem)
        except (OSError, F5BatchError) as exc:
            print(f"{file}: not submitted: {getattr(exc, 'code', 'unreadable')}: {exc}", file=sys.stderr)
            failed += 1
            continue
        target = inbox / file.name
        if target.exists():
            print(f"{file}: not submitted: {target} is already waiting in the inbox", file=sys.stderr)
            failed += 1
            continue
        try:
            _copy_voice(LocalVoices(file.parent).resolve(manifest.voice), LocalVoices(inbox).resolve(manifest.voice))
        except F5BatchError as exc:
            print(f"{file}: not submitted: {exc.code}: {exc}", file=sys.stderr)
            failed += 1
            continue
        tmp = inbox / f".{file.name}.submitting"
        shutil.copyfile(file, tmp)
        os.replace(tmp, target)  # the worker never sees a half-copied manifest
        print(f"submitted {manifest.job_id} -> {target}")
    return EXIT_FAILED if failed else EXIT_OK


def _copy_voice(source: Path, target: Path) -> None:
    """Bring a voice clip that sits next to the manifest along into the inbox."""
    if not source.is_file() or (target.is_file() and target.stat().st_size == source.stat().st_size):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.submitting")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            manifest = parse_manifest(file.read_bytes(), file.stem)
            print(f"{file}: ok (id {manifest.job_id}, seed {manifest.effective_seed})")
        except (OSError, F5BatchError) as exc:
            print(f"{file}: {getattr(exc, 'code', 'unreadable')}: {exc}")
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK
