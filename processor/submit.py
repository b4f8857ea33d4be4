"""`f5-batch submit`: check manifests as the worker will (`processor.validation`), then hand them over
(`processor.submission`), or with --dry-run say what would be sent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from processor.errors import AwsUnavailable, CommandError, F5BatchError

if TYPE_CHECKING:  # loaded when the command runs: building the parser for another command stays cheap
    from processor.submission import Step, Target

EXIT_OK, EXIT_REFUSED = 0, 1

HELP = "validate manifests and hand them (and the voices next to them) to an inbox or a queue"
DESCRIPTION = """\
Validate manifests with every rule the worker applies (see `f5-batch validate`), then
hand them over with the voice clips that sit next to them (the manifest's "voice"
and each of its "voices", relative to the manifest's folder):

  --inbox DIR           the manifest and its voice are copied into the folder
  --inbox s3://B/P/     the voice goes to its key in bucket B, the manifest under P
  --queue URL           the manifest is the message ("id" set to the file name when
                        it has none); a voice file next to it is refused, as
                        nothing would upload it
  --queue URL --inbox s3://B/P/
                        the voice goes to its key in bucket B (where the queue's
                        worker, whose F5B_INBOX this is, looks for it), then the
                        message

A voice goes before its manifest, and a clip shared by several manifests goes once;
a voice already in S3 is not uploaded (with an S3 inbox, one in another bucket must
be in F5B_VOICE_BUCKETS, as for the worker). S3 and SQS calls are retried on
throttling, 5xx and network errors (F5B_AWS_MAX_ATTEMPTS, F5B_AWS_RETRY_TOTAL_S);
an AWS error that outlasts them is one line with its fix."""
EPILOG = """\
examples:
  f5-batch submit manifests/examples/*.json --inbox inbox/
  f5-batch submit job.json --inbox s3://my-inbox/inbox/
  f5-batch submit job.json --queue https://sqs.eu-west-1.amazonaws.com/123456789012/tts-jobs \\
                           --inbox s3://my-inbox/inbox/ --dry-run

exit status:
  0  every manifest was handed over (or, with --dry-run, would be)
  1  at least one manifest was refused (one line per problem: FILE: not submitted: CODE: ...)
  2  usage or AWS error: a bad flag, an inbox of no known kind, no credentials or region,
     a missing bucket or queue, an endpoint that does not answer (one line with the fix)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="manifest files")
    parser.add_argument("--inbox", metavar="DIR|s3://BUCKET/PREFIX/",
                        help="the worker's inbox: a folder, or an S3 inbox (with --queue: where voices are uploaded)")
    parser.add_argument("--queue", metavar="URL", help="SQS queue URL: send each manifest as a message")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything and print what would be copied, uploaded or sent, without an S3 or "
                             "SQS call")
    parser.add_argument("--s3-path-style", action="store_true",
                        help="path-style S3 addressing, for S3-compatible stores (default: off)")


def run(args: argparse.Namespace) -> int:
    from processor.failures import quiet_retries
    from processor.submission import target
    from processor.validation import env_settings

    quiet_retries()
    settings = env_settings()
    if args.s3_path_style:
        settings = settings.model_copy(update={"s3_path_style": True})
    where = target(args.inbox, args.queue, settings)
    refused, sent = 0, set[str]()
    for file in args.files:
        if not submit_one(file, where, sent, args.dry_run):
            refused += 1
    return EXIT_REFUSED if refused else EXIT_OK


def submit_one(file: Path, where: Target, sent: set[str], dry_run: bool) -> bool:
    """Check and hand over one manifest; False (its problems said) when it is refused."""
    from processor.submission import Submission
    from processor.validation import check_file

    checked = check_file(file, where.voices)
    for problem in checked.problems:
        refuse(file, problem.code, str(problem))
    if checked.manifest is None:
        return False
    try:
        steps = [s for s in where.steps(Submission.of(checked)) if not s.voice or s.voice not in sent]
        for step in steps:
            do(step, dry_run)
            if step.voice:
                sent.add(step.voice)
    except AwsUnavailable:
        raise  # the bucket, the queue or the credentials: every manifest would fail the same way
    except CommandError as exc:
        refuse(file, exc.code, str(exc) + (f" — fix: {exc.fix}" if exc.fix else ""))
        return False
    except F5BatchError as exc:
        refuse(file, exc.code, str(exc))
        return False
    return True


def do(step: Step, dry_run: bool) -> None:
    if dry_run:
        print(f"dry run: would {step.plan}")
        return
    said = step.run()
    if said:
        print(said)


def refuse(file: Path, code: str, why: str) -> None:
    print(f"{file}: not submitted: {code}: {why}", file=sys.stderr)
