"""`f5-batch validate`, and the checks of a manifest file that `submit` shares with it.

The rules live where the worker applies them: a file's in `storage.entries` (a regular
file, at most 256 KiB), a manifest's in `manifest.check_manifest` (JSON, schema, id,
text), a voice path's in `storage.local.voice_path` (a folder inbox) and
`storage.s3.voice_object` (an S3 inbox or a queue). This module only puts them
together per file and collects every problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.errors import F5BatchError, ManifestUnreadable
from processor.manifest import CheckedManifest, Manifest, Problem, check_manifest, printable
from processor.settings import Settings

EXIT_OK, EXIT_INVALID = 0, 1

VoiceRule = Callable[[str], object]  # refuses (VoiceNotAllowed) a voice the worker would not read


# The storage modules are loaded when a rule is applied: building the parser for another command stays cheap.


def folder_voices(ref: str) -> object:
    from processor.storage.local import voice_path

    return voice_path(Path("."), ref)


def s3_voices(inbox_bucket: str, allowed: frozenset[str] | None) -> VoiceRule:
    def rule(ref: str) -> object:
        from processor.storage.s3 import voice_object

        return voice_object(ref, inbox_bucket, allowed)

    return rule


def any_inbox_voices(ref: str) -> object:
    """What every kind of inbox refuses: `..`, an absolute path, a URL other than s3:// (read by an S3 inbox)."""
    return s3_voices("", None)(ref) if "://" in ref else folder_voices(ref)


ANY_INBOX: VoiceRule = any_inbox_voices


def voice_rule(inbox: str | None, settings: Settings) -> VoiceRule:
    """The voice rules of the worker that takes jobs from `inbox` (None: the rules every kind of inbox applies)."""
    from processor.aws import S3Location
    from processor.schemes import scheme_of
    from processor.storage.s3 import voice_buckets

    if inbox is None:
        return ANY_INBOX
    scheme_of(inbox, "inbox")
    bucket = S3Location.bucket_of(inbox)
    return folder_voices if bucket is None else s3_voices(bucket, voice_buckets(settings, bucket))


@dataclass(frozen=True)
class CheckedFile:
    file: Path
    body: bytes
    checked: CheckedManifest
    problems: list[Problem]

    @property
    def manifest(self) -> Manifest | None:
        return None if self.problems else self.checked.manifest


def check_file(file: Path, voices: VoiceRule) -> CheckedFile:
    """Every problem of the manifest file `file`, as the worker and `submit` would find them."""
    try:
        body = read_file(file)
    except F5BatchError as exc:
        return CheckedFile(file, b"", CheckedManifest(None, []), [Problem.of(exc)])
    checked = check_manifest(body, file.stem)
    problems = list(checked.problems)
    said = {p.field for p in problems}
    for field, ref in voice_refs(checked.data or {}):
        if field not in said:
            try:
                voices(ref)
            except F5BatchError as exc:
                problems.append(Problem.of(exc, field))
    return CheckedFile(file, body, checked, problems)


def voice_refs(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every voice path of a manifest's JSON object, with its field: `voice`, then `voices.NAME.voice`."""
    if isinstance(voice := data.get("voice"), str):
        yield "voice", voice
    table = data.get("voices")
    for name, entry in table.items() if isinstance(table, dict) else ():
        if isinstance(entry, dict) and isinstance(voice := entry.get("voice"), str):
            yield f"voices.{printable(name, 100)}.voice", voice


def read_file(file: Path) -> bytes:
    """A manifest named on the command line: a link to it is followed (the user named it); a folder, FIFO, device
    or file over the limit is refused as an inbox refuses it."""
    from processor.storage.entries import read_manifest_file

    try:
        real = Path(os.path.realpath(file, strict=True))
    except OSError as exc:
        raise ManifestUnreadable(f"manifest {file} cannot be opened: {exc.strerror}") from exc
    if real.is_dir():
        raise ManifestUnreadable(f"{file} is a folder, not a manifest file: name the files in it ({file}/*.json)")
    body, _ = read_manifest_file(real, str(file))
    return body


def env_settings() -> Settings:
    """The F5B_* settings of this environment; a bad value is one line naming the variable."""
    from processor.flags import settings_from

    return settings_from(argparse.Namespace(), os.environ)


# --- the command ---------------------------------------------------------------------------------------------

HELP = "check manifests without running them: every rule submit and the worker apply"
DESCRIPTION = """\
Check manifests without running them. Every rule the worker and `submit` apply is
checked: the file (a regular file of at most 256 KiB), JSON, the schema, the id
(the file name when there is no "id"), the text (its voice tags and breaks too), and
every voice path, the voices table's too (no `..`, no absolute path; with --inbox,
exactly the rules of that inbox). Every problem of a
manifest is reported, one line each: FILE: CODE: FIELD: MESSAGE (--json: FIELD
apart)."""
EPILOG = """\
examples:
  f5-batch validate manifests/examples/*.json
  f5-batch validate --json --inbox s3://my-inbox/inbox/ jobs/*.json

exit status:
  0  every manifest is valid
  1  at least one manifest is invalid
  2  usage error (a bad flag, or an --inbox of no known kind)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="manifest files")
    parser.add_argument("--inbox", metavar="LOCATION",
                        help="apply the voice rules of this inbox (a folder or s3://bucket/prefix/; with an S3 inbox "
                             "F5B_VOICE_BUCKETS is honoured) (default: the rules every inbox applies)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document: per file, ok, id and problems [{code, field, message}]")


def run(args: argparse.Namespace) -> int:
    voices = voice_rule(args.inbox, env_settings())
    results = [check_file(file, voices) for file in args.files]
    if args.json:
        print(json.dumps({"ok": all(r.manifest for r in results), "files": [as_json(r) for r in results]},
                         indent=2, ensure_ascii=False))
    else:
        for result in results:
            for line in as_lines(result):
                print(line)
    return EXIT_OK if all(r.manifest for r in results) else EXIT_INVALID


def as_lines(result: CheckedFile) -> list[str]:
    if result.manifest is not None:
        return [f"{result.file}: ok (id {result.manifest.job_id}, seed {result.manifest.effective_seed})"]
    return [f"{result.file}: {p.code}: {p}" for p in result.problems]


def as_json(result: CheckedFile) -> dict[str, object]:
    return {
        "file": str(result.file),
        "ok": result.manifest is not None,
        "id": result.manifest.job_id if result.manifest else None,
        "problems": [{"code": p.code, "field": p.field, "message": p.message} for p in result.problems],
    }


def print_problems(result: CheckedFile, prefix: str = "") -> None:
    for problem in result.problems:
        print(f"{result.file}: {prefix}{problem.code}: {problem}", file=sys.stderr)
