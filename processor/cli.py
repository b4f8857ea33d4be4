"""The `f5-batch` command: run the worker, submit manifests, print the schema."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from processor import __version__
from processor.errors import F5BatchError, InvalidConfiguration
from processor.manifest import parse_manifest, schema_text
from processor.seeding.cli import add_arguments as add_seed_arguments
from processor.settings import Settings
from processor.submit import Submission

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f5-batch", description="Batch text-to-speech with F5-TTS.")
    parser.add_argument("--version", action="version", version=f"f5-batch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="take manifests from the inbox and write results to the outbox")
    add_worker_options(run)
    run.add_argument("--log-format", choices=["json", "text"], help="log lines as JSON or text (F5B_LOG_FORMAT)")
    run.add_argument("--max-batch", type=int, help="jobs per synthesis call, 0: auto (F5B_MAX_BATCH)")
    run.add_argument("--prefetch", type=int, help="jobs made ready ahead of synthesis (F5B_PREFETCH)")
    run.add_argument("--exit-when-idle", dest="exit_when_idle_s", type=float, metavar="SECONDS",
                     help="exit 0 after this long without a job (F5B_EXIT_WHEN_IDLE_S)")
    run.add_argument("--metrics-port", type=int, help="serve /healthz and /metrics on this port (F5B_METRICS_PORT)")
    run.add_argument("--once", action="store_true", help="process what is in the inbox, then exit")

    submit = commands.add_parser("submit", help="validate manifests and drop them (and their voices) into the inbox")
    submit.add_argument("files", nargs="+", type=Path)
    target = submit.add_mutually_exclusive_group(required=True)
    target.add_argument("--inbox", help="inbox folder or s3://bucket/prefix/")
    target.add_argument("--queue", help="SQS queue URL (the manifest is the message)")
    submit.add_argument("--s3-path-style", action="store_true", help="path-style S3 addressing")

    boot = commands.add_parser("bootstrap", help="create the queue, its dead-letter queue and the inbox notification")
    boot.add_argument("--queue-name", required=True)
    boot.add_argument("--inbox", help="s3://bucket/prefix/ whose new .json objects feed the queue")
    boot.add_argument("--outbox", help="s3://bucket/prefix/ (created with --create-buckets)")
    boot.add_argument("--create-buckets", action="store_true", help="create the inbox and outbox buckets if missing")
    boot.add_argument("--max-receive-count", type=int, default=Settings.default("max_receives"),
                      help="deliveries before the dead-letter queue")
    boot.add_argument("--visibility-timeout", type=int, default=Settings.default("lease_s"),
                      help="queue visibility timeout, seconds (the worker's lease, F5B_LEASE_S)")
    boot.add_argument("--s3-path-style", action="store_true", help="path-style S3 addressing")

    validate = commands.add_parser("validate", help="check manifests without running them")
    validate.add_argument("files", nargs="+", type=Path)

    commands.add_parser("schema", help="print the manifest JSON Schema")

    doctor = commands.add_parser("doctor", help="check that this pod is set up right before it takes work")
    add_worker_options(doctor)
    doctor.add_argument("--json", action="store_true", help="one JSON document instead of one line per check")

    seed = commands.add_parser("seed", help="put a model on the volume (once) so the worker can run offline")
    add_seed_arguments(seed)

    health = commands.add_parser("health", help="exit 0 if the worker running here is healthy (for HEALTHCHECK)")
    health.add_argument("--processing-dir", type=Path, help="the worker's scratch folder (F5B_PROCESSING_DIR)")
    return parser


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """Where the worker's jobs, model and scratch files are: shared by `run` and `doctor`."""
    parser.add_argument("--inbox", help="inbox folder or s3://bucket/prefix/ (F5B_INBOX)")
    parser.add_argument("--outbox", help="outbox folder or s3://bucket/prefix/ (F5B_OUTBOX)")
    parser.add_argument("--queue", help="SQS queue URL to take jobs from (F5B_QUEUE)")
    parser.add_argument("--s3-path-style", action="store_const", const=True, help="path-style S3 (F5B_S3_PATH_STYLE)")
    parser.add_argument("--volume", type=Path, help="model volume (F5B_VOLUME)")
    parser.add_argument("--model", help="model name on the volume (F5B_MODEL)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (F5B_DEVICE)")
    parser.add_argument("--processing-dir", type=Path, help="scratch folder for job files (F5B_PROCESSING_DIR)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "submit": cmd_submit, "validate": cmd_validate, "schema": cmd_schema,
               "bootstrap": cmd_bootstrap, "doctor": cmd_doctor, "seed": cmd_seed, "health": cmd_health}[args.command]
    return handler(args)


def settings_from(args: argparse.Namespace) -> Settings:
    names = ("inbox", "outbox", "queue", "s3_path_style", "volume", "model", "device", "processing_dir", "log_format",
             "max_batch", "prefetch", "exit_when_idle_s", "metrics_port")
    overrides: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return Settings(**overrides)


def valid_settings(args: argparse.Namespace) -> Settings | None:
    """The Settings of flags and environment, or None once what is invalid has been said."""
    from processor.schemes import check

    try:
        settings = settings_from(args)
        check(settings)
    except ValidationError as exc:
        print(f"f5-batch: invalid configuration:\n{exc}", file=sys.stderr)
        return None
    except InvalidConfiguration as exc:
        print(f"f5-batch: invalid configuration: {exc}", file=sys.stderr)
        return None
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    settings = valid_settings(args)
    if settings is None:
        return EXIT_USAGE
    from processor.app import build_worker
    from processor.logs import configure, logger

    configure(settings.log_format)
    try:
        worker = build_worker(settings)
    except F5BatchError as exc:
        logger.error(str(exc), extra={"stage": "startup", "code": exc.code})
        return EXIT_FAILED
    from processor.shutdown import Shutdown

    shutdown = Shutdown(settings.shutdown_grace_s)
    shutdown.install()
    handled = worker.run(once=args.once, shutdown=shutdown)
    signalled = not worker.exited_idle and worker.trouble is None and shutdown.requested.is_set()
    reason = (f"idle for {settings.exit_when_idle_s:g} s" if worker.exited_idle
              else "stopped taking work" if worker.trouble is not None
              else "stopped by signal" if signalled else "inbox drained")
    tally = worker.tally
    # A stop by signal gives back what it holds by design: its jobs left are no failure of the run.
    failed = worker.trouble is not None or (tally.left > 0 and not signalled)
    say = logger.warning if failed else logger.info
    say(f"{reason}: {tally.summary()}", extra={"stage": "exit", "handled": handled, **tally.fields()})
    if worker.trouble is not None:
        logger.error(f"the worker stopped before its work was done: {worker.trouble}", extra={"stage": "exit"})
    return EXIT_FAILED if failed else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        deliver = _submit_target(args)
    except InvalidConfiguration as exc:
        print(f"f5-batch submit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    failed = 0
    for file in args.files:
        try:
            sub = Submission(file, parse_manifest(file.read_bytes(), file.stem))
            where = deliver(sub)
        except (OSError, F5BatchError) as exc:
            print(f"{file}: not submitted: {getattr(exc, 'code', 'unreadable')}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"submitted {sub.manifest.job_id} -> {where}")
    return EXIT_FAILED if failed else EXIT_OK


def _submit_target(args: argparse.Namespace) -> Callable[[Submission], str]:
    from processor import submit
    from processor.aws import S3Location, make_client
    from processor.schemes import check_folder, scheme_of

    if args.queue:
        sqs = make_client("sqs")
        return lambda sub: submit.to_queue(sub, args.queue, sqs)
    scheme_of(args.inbox, "inbox")
    if S3Location.bucket_of(args.inbox) is not None:
        location, s3 = S3Location.parse(args.inbox), make_client("s3", path_style=args.s3_path_style)
        return lambda sub: submit.to_s3(sub, location, s3)
    check_folder(args.inbox, "inbox")
    inbox = Path(args.inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    return lambda sub: submit.to_folder(sub, inbox)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from processor.aws import S3Location, make_client
    from processor.bootstrap import BootstrapPlan, bootstrap

    try:
        s3 = make_client("s3", path_style=args.s3_path_style)
        plan = BootstrapPlan(
            queue_name=args.queue_name,
            inbox=S3Location.parse(args.inbox) if args.inbox else None,
            outbox=S3Location.parse(args.outbox) if args.outbox else None,
            create_buckets=args.create_buckets,
            max_receive_count=args.max_receive_count,
            visibility_timeout_s=args.visibility_timeout,
            region=s3.meta.region_name,  # outside us-east-1 a bucket needs its location constraint
        )
        made = bootstrap(plan, s3, make_client("sqs"))
    except F5BatchError as exc:
        print(f"f5-batch bootstrap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for name, value in made.items():
        print(f"{name}={value}")
    return EXIT_OK


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


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = valid_settings(args)
    if settings is None:
        return EXIT_USAGE
    from processor.doctor import run_doctor

    code: int = run_doctor(settings, as_json=args.json)
    return code


def cmd_seed(args: argparse.Namespace) -> int:
    from processor.seeding.cli import run

    return run(args)


def cmd_health(args: argparse.Namespace) -> int:
    from processor.health import check, health_file

    settings = valid_settings(args)
    if settings is None:
        return EXIT_USAGE
    healthy, why = check(health_file(settings.processing_dir))
    print(why)
    return EXIT_OK if healthy else EXIT_FAILED
