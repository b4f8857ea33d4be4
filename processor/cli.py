"""The `f5-batch` command: run the worker, submit manifests, print the schema."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from processor import __version__, bootstrap, submit, validation
from processor.errors import CommandError, F5BatchError, InvalidConfiguration, StartupCheckFailed
from processor.failures import explain, is_aws_error
from processor.flags import add_setting_flags, check_variables, settings_from
from processor.manifest import schema_text
from processor.seeding.cli import add_arguments as add_seed_arguments
from processor.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their lines (examples, exit codes); flags wrap as usual."""


RUN_DESCRIPTION = """\
The worker: take manifests from the inbox (a folder, an S3 prefix, or an SQS queue), synthesize each with the
model on the volume, and write audio.<format>, log.jsonl and result.json to the outbox, one folder per job.
Before the model loads it checks what doctor checks quickly (inbox, outbox, queue, region, model, metrics port)."""
RUN_EPILOG = """\
examples:
  f5-batch run --once                                       # ./inbox -> ./outbox, then exit
  f5-batch run --inbox s3://jobs/inbox/ --outbox s3://jobs/outbox/
  f5-batch run --queue https://sqs.us-east-1.amazonaws.com/123456789012/f5-batch \\
               --inbox s3://jobs/inbox/ --outbox s3://jobs/outbox/ --metrics-port 9100

exit status:
  0  --once: every job taken succeeded or failed with a result; or idle (--exit-when-idle), or stopped by a signal
  1  a job was left unfinished, or the worker had to stop taking work (e.g. an outbox it cannot write)
  2  a setting or start-up check is wrong: one line names it and the fix, before the model loads"""
DOCTOR_DESCRIPTION = """\
Check that this pod is set up right before it takes work: the volume (mounted, not the container disk, free
space), the caches, the processing folder, the model (complete, checksums, loadable, a short test synthesis),
the inbox, outbox and queue (reachable with these credentials, dead-letter queue), the region and the metrics
port. Every line that is not a pass names the fix (docs/troubleshooting.md explains each check)."""
DOCTOR_EPILOG = """\
examples:
  f5-batch doctor
  f5-batch doctor --queue https://sqs.us-east-1.amazonaws.com/123456789012/f5-batch --inbox s3://jobs/inbox/
  f5-batch doctor --json && f5-batch run        # a pod's start command

exit status:
  0  nothing failed (warnings allowed)
  1  a check failed: fix the FAIL lines
  2  a setting is wrong (one line names it)"""
HEALTH_DESCRIPTION = """\
Is every worker of this container healthy? Each running worker keeps its own file under
<processing dir>/health/, rewritten every few seconds; a worker is healthy while its file is fresh, its process
alive and no synthesis call has run past the job time limit. One line per worker found."""
HEALTH_EPILOG = """\
examples:
  f5-batch health                    # the image's HEALTHCHECK
  f5-batch health --pid 4242         # one worker only

exit status:
  0  every worker found is healthy, and at least one is running
  1  a worker is unhealthy, frozen or gone, or none is running (the lines say which)
  2  a setting is wrong (one line names it)"""
SCHEMA_DESCRIPTION = """\
Print the manifest's JSON Schema (manifests/schema.json), for editors and producers.

example:
  f5-batch schema > manifest.schema.json

exit status: 0"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="f5-batch", description="Batch text-to-speech with F5-TTS.",
        epilog="f5-batch COMMAND --help: what a command does, its flags with their defaults, examples and exit status.")
    parser.add_argument("--version", action="version", version=f"f5-batch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="take manifests from the inbox and write results to the outbox",
                              description=RUN_DESCRIPTION, epilog=RUN_EPILOG, formatter_class=HelpFormatter)
    run.add_argument("--once", action="store_true", help="process what is in the inbox, then exit")
    add_setting_flags(run)

    submit.add_arguments(commands.add_parser(
        "submit", help=submit.HELP, description=submit.DESCRIPTION, epilog=submit.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter))

    bootstrap.add_arguments(commands.add_parser(
        "bootstrap", help=bootstrap.HELP, description=bootstrap.DESCRIPTION, epilog=bootstrap.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter))

    validation.add_arguments(commands.add_parser(
        "validate", help=validation.HELP, description=validation.DESCRIPTION, epilog=validation.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter))

    commands.add_parser("schema", help="print the manifest JSON Schema", description=SCHEMA_DESCRIPTION,
                        formatter_class=HelpFormatter)

    doctor = commands.add_parser("doctor", help="check that this pod is set up right before it takes work",
                                 description=DOCTOR_DESCRIPTION, epilog=DOCTOR_EPILOG, formatter_class=HelpFormatter)
    doctor.add_argument("--json", action="store_true", help="one JSON document instead of one line per check")
    add_setting_flags(doctor)

    seed = commands.add_parser("seed", help="put a model on the volume (once) so the worker can run offline")
    add_seed_arguments(seed)

    health = commands.add_parser("health", help="exit 0 if the workers running here are healthy (for HEALTHCHECK)",
                                 description=HEALTH_DESCRIPTION, epilog=HEALTH_EPILOG, formatter_class=HelpFormatter)
    health.add_argument("--processing-dir", type=Path,
                        help=f"the workers' scratch folder (F5B_PROCESSING_DIR; default: "
                             f"{Settings.default('processing_dir')})")
    health.add_argument("--pid", type=int, help="check only the worker with this process id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "submit": cmd_submit, "validate": cmd_validate, "schema": cmd_schema,
               "bootstrap": cmd_bootstrap, "doctor": cmd_doctor, "seed": cmd_seed, "health": cmd_health}[args.command]
    try:
        return handler(args)
    except CommandError as exc:
        return refuse(args.command, str(exc), exc.fix)
    except KeyboardInterrupt:
        print(f"f5-batch {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.filename is None:
            raise
        return refuse(args.command, f"{exc.filename}: {exc.strerror or exc}",
                      "check that the path exists, is what the flag expects, and this user may use it")
    except Exception as exc:
        if not is_aws_error(exc):
            raise  # a bug: its traceback is what a report needs
        explained = explain(exc)
        return refuse(args.command, explained.detail, explained.fix)


def refuse(command: str, detail: str, fix: str = "") -> int:
    """The one line a command prints when it cannot go on: what failed, and what to do."""
    print(f"f5-batch {command}: {detail}" + (f" — fix: {fix}" if fix else ""), file=sys.stderr)
    return EXIT_USAGE


def valid_settings(args: argparse.Namespace, *, strict: bool = True) -> Settings:
    """The Settings of flags and environment, checked before anything is made or loaded: InvalidConfiguration
    (one line, exit 2) names the flag or variable that is wrong. `strict`: a mistyped F5B_* variable is refused
    too (`run`, `doctor`); otherwise it is a warning."""
    from processor.schemes import check

    try:
        check_variables(os.environ)
    except InvalidConfiguration as exc:
        if strict:
            raise
        print(f"f5-batch {args.command}: warning: {exc} — fix: {exc.fix}", file=sys.stderr)
    settings = settings_from(args, os.environ)
    check(settings)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    settings = valid_settings(args)
    from processor.app import build_worker
    from processor.logs import configure, logger

    configure(settings.log_format)
    check_before_loading(settings)
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
    return submit.run(args)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    return bootstrap.run(args)


def cmd_validate(args: argparse.Namespace) -> int:
    return validation.run(args)


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK


def check_before_loading(settings: Settings) -> None:
    """doctor's quick checks, before a model load that can take a minute: the first failure is one line, exit 2;
    a warning is logged and the worker starts."""
    from processor.doctor import startup_checks
    from processor.logs import logger

    for check in startup_checks(settings):
        if check.status == "fail":
            raise StartupCheckFailed(f"{check.name}: {check.detail}", check.hint)
        if check.status == "warn":
            logger.warning(f"{check.name}: {check.detail}", extra={"stage": "startup", "check": check.name,
                                                                   "fix": check.hint})


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = valid_settings(args)
    from processor.doctor import run_doctor

    code: int = run_doctor(settings, as_json=args.json)
    return code


def cmd_seed(args: argparse.Namespace) -> int:
    from processor.seeding.cli import run

    return run(args)


def cmd_health(args: argparse.Namespace) -> int:
    from processor.health import check_workers

    settings = valid_settings(args, strict=False)
    healthy, lines = check_workers(settings.processing_dir, pid=args.pid)
    print("\n".join(lines))
    return EXIT_OK if healthy else EXIT_FAILED
