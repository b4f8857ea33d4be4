"""`submit`, `validate` and `bootstrap` as a producer and an operator meet them: through the real command, against
moto, with the faults and mistakes of a real account."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from processor.failures import explain
from processor.manifest import seed_from_id
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, free_ports, unique_name
from tests.support.fault_proxy import FaultProxy, Request, is_sqs
from tests.support.manifests import manifest, write_manifest
from tests.support.paths import EXAMPLES, REPO
from tests.support.results import s3_results

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
# The examples in the narrator's voice alone, at their plain settings: what the queue test synthesizes (the
# story's other voices go up in the dry run; make demo synthesizes every example).
ONE_VOICE_EXAMPLES = [EXAMPLES / name for name in ("chapter-flac.json", "fast-draft.json", "hello.json")]
QUICK_RETRIES = {"F5B_AWS_MAX_ATTEMPTS": "2", "F5B_AWS_RETRY_TOTAL_S": "5"}


def f5_batch(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def one_line(out: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a command that refused, with no traceback."""
    assert out.returncode == code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


class FirstCalls:
    """Picks the first `n` S3 and the first `n` SQS requests, for a proxy that throttles exactly those."""

    def __init__(self, n: int) -> None:
        self.left = {"s3": n, "sqs": n}

    def __call__(self, req: Request) -> bool:
        service = "sqs" if is_sqs(req) else "s3"
        self.left[service] -= 1
        return self.left[service] >= 0


# --- the done-when: every shipped example, to a queue, ends in a succeeded result ------------------------------


def test_the_examples_submitted_to_a_queue_through_throttling_all_succeed(moto_endpoint: Endpoint, tmp_path: Path,
                                                                          tiny_volume: Volume) -> None:
    env = moto_endpoint.env()
    inbox, outbox = f"s3://{unique_name('inbox')}/inbox/", f"s3://{unique_name('outbox')}/"
    boot = f5_batch(env, "bootstrap", "--queue-name", unique_name("jobs"), "--inbox", inbox, "--outbox", outbox,
                    "--create-buckets", "--s3-path-style")
    assert boot.returncode == 0, boot.stderr
    queue = dict(line.split("=", 1) for line in boot.stdout.split())["queue_url"]

    with FaultProxy(moto_endpoint.url, rate=1.0, kinds=("http503",), only=FirstCalls(2)) as proxy:
        sent = f5_batch({**env, "AWS_ENDPOINT_URL": proxy.url}, "submit", *map(str, ONE_VOICE_EXAMPLES),
                        "--queue", queue, "--inbox", inbox, "--s3-path-style")
    assert sent.returncode == 0, sent.stderr
    assert proxy.stats["faults"] == 4, "two S3 and two SQS calls were throttled, and retried"
    assert sent.stderr == "", "retries are not the producer's business"
    assert sent.stdout.count("uploaded ") == 1, "one voice shared by three manifests goes up once"
    assert "submitted hello -> message " in sent.stdout, "an id-less manifest is named after its file"

    run = f5_batch({**env, "F5B_RECEIVE_WAIT_S": "1"}, "run", "--queue", queue, "--inbox", inbox,
                   "--outbox", outbox, "--volume", str(tiny_volume.root), "--model", "tiny",
                   "--processing-dir", str(tmp_path / "processing"), "--s3-path-style", "--once", timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    found = s3_results(moto_endpoint.client("s3"), outbox.split("/")[2])
    assert {job: r["status"] for job, r in found.items()} == {
        "hello": "succeeded", "chapter-1": "succeeded", "draft-0001": "succeeded"}


# --- submit ----------------------------------------------------------------------------------------------------


def test_a_dry_run_says_what_it_would_send_and_sends_nothing(moto_endpoint: Endpoint) -> None:
    s3 = moto_endpoint.client("s3")
    bucket = unique_name("dry")
    s3.create_bucket(Bucket=bucket)
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/tts-jobs"
    # No credentials and an endpoint that answers nothing: a dry run makes no call at all.
    env = {**moto_endpoint.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": ""}
    out = f5_batch(env, "submit", *map(str, EXAMPLE_FILES), "--queue", queue, "--inbox", f"s3://{bucket}/inbox/",
                   "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (f"dry run: would upload {EXAMPLES / 'voices' / 'narrator.wav'} "
                        f"({(EXAMPLES / 'voices' / 'narrator.wav').stat().st_size} bytes) "
                        f"-> s3://{bucket}/voices/narrator.wav")
    sends = [line for line in lines if line.startswith("dry run: would send ")]
    uploads = [line for line in lines if line.startswith("dry run: would upload ")]
    assert len(sends) == 5 and len(uploads) == 5 and len(lines) == 10, out.stdout
    assert all(line.endswith(f"bytes) -> {queue}") and "(message body " in line for line in sends)
    assert "KeyCount" in s3.list_objects_v2(Bucket=bucket) and s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_queue_without_an_s3_inbox_refuses_a_voice_nothing_would_upload(tmp_path: Path) -> None:
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/tts-jobs"
    line = one_line(f5_batch({}, "submit", str(EXAMPLES / "hello.json"), "--queue", queue, "--dry-run"), code=1)
    assert line.startswith(f"{EXAMPLES / 'hello.json'}: not submitted: voice_not_uploaded: ")
    assert line.endswith(f"aws s3 cp {EXAMPLES / 'voices' / 'narrator.wav'} s3://BUCKET/voices/narrator.wav"), line
    assert "--inbox s3://BUCKET/PREFIX/" in line

    remote = write_manifest(tmp_path, "remote", manifest(voice="s3://voices/narrator.wav"))
    out = f5_batch({}, "submit", str(remote), "--queue", queue, "--dry-run")
    assert out.returncode == 0 and "would send remote " in out.stdout, "a voice already in S3 needs no upload"

    folder = one_line(f5_batch({}, "submit", str(remote), "--queue", queue, "--inbox", str(tmp_path / "in")))
    assert "a queue's worker reads voices from an S3 inbox" in folder and "fix: give --inbox s3://" in folder


def test_a_voice_neither_next_to_the_manifest_nor_in_the_bucket_is_refused(moto_endpoint: Endpoint,
                                                                           tmp_path: Path) -> None:
    s3 = moto_endpoint.client("s3")
    bucket = unique_name("voices")
    s3.create_bucket(Bucket=bucket)
    job = write_manifest(tmp_path, "job", manifest())
    args = ("submit", str(job), "--inbox", f"s3://{bucket}/inbox/", "--s3-path-style")
    line = one_line(f5_batch(moto_endpoint.env(), *args), code=1)
    assert line == (f"{job}: not submitted: voice_not_found: voice 'voices/narrator.wav' is neither next to the "
                    f"manifest ({tmp_path / 'voices' / 'narrator.wav'}) nor in s3://{bucket}/voices/narrator.wav; "
                    "put the clip next to the manifest to upload it")
    s3.put_object(Bucket=bucket, Key="voices/narrator.wav", Body=b"RIFF")
    out = f5_batch(moto_endpoint.env(), *args)
    assert (out.returncode, out.stdout) == (0, f"submitted job -> s3://{bucket}/inbox/job.json\n"), out.stderr


def test_a_bad_path_is_one_line_per_file(tmp_path: Path) -> None:
    out = f5_batch({}, "submit", str(tmp_path / "missing.json"), str(tmp_path), "--inbox", str(tmp_path / "in"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"{tmp_path / 'missing.json'}: not submitted: manifest_unreadable: manifest {tmp_path / 'missing.json'} "
        "cannot be opened: No such file or directory",
        f"{tmp_path}: not submitted: manifest_unreadable: {tmp_path} is a folder, not a manifest file: name the "
        f"files in it ({tmp_path}/*.json)",
    ]


def test_every_voice_of_a_voices_table_goes_before_its_manifest_and_a_shared_clip_goes_once(tmp_path: Path) -> None:
    voices = tmp_path / "jobs" / "voices"
    voices.mkdir(parents=True)
    for name in ("narrator.wav", "narrator.txt"):
        (voices / name).write_bytes((EXAMPLES / "voices" / name).read_bytes())
    (voices / "town.wav").write_bytes((EXAMPLES / "voices" / "narrator.wav").read_bytes())
    (voices / "town.txt").write_text("The town mouse.")
    table = {"town": {"voice": "voices/town.wav", "speed": 0.8}, "again": {"voice": "voices/narrator.wav"}}
    job = write_manifest(tmp_path / "jobs", "story", manifest("Hi. [town] Hello. [again] Bye.", voice_text=None,
                                                              voices=table))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    out = f5_batch({}, "submit", str(job), "--inbox", str(inbox))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"copied {voices / 'narrator.txt'} -> {inbox / 'voices' / 'narrator.txt'}",
        f"copied {voices / 'narrator.wav'} -> {inbox / 'voices' / 'narrator.wav'}",
        f"copied {voices / 'town.txt'} -> {inbox / 'voices' / 'town.txt'}",
        f"copied {voices / 'town.wav'} -> {inbox / 'voices' / 'town.wav'}",
        f"submitted story -> {inbox / 'story.json'}",
    ]
    dry = f5_batch({}, "submit", str(job), "--inbox", "s3://my-inbox/inbox/", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [line.split(" -> ")[-1] for line in dry.stdout.splitlines()] == [
        "s3://my-inbox/voices/narrator.txt", "s3://my-inbox/voices/narrator.wav", "s3://my-inbox/voices/town.txt",
        "s3://my-inbox/voices/town.wav", "s3://my-inbox/inbox/story.json"]
    (voices / "town.wav").unlink()
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/tts-jobs"
    missing = one_line(f5_batch({}, "submit", str(job), "--inbox", str(tmp_path / "other")), code=1)
    assert "voice_not_found: voice 'voices/town.wav' is neither next to the manifest" in missing
    unsent = one_line(f5_batch({}, "submit", str(job), "--queue", queue, "--dry-run"), code=1)
    assert "voice_not_uploaded: voice 'voices/narrator.wav' is a file next to the manifest" in unsent


REMOTE = "{a manifest whose voice is in S3}"


def aws_mistakes(endpoint: Endpoint) -> dict[str, tuple[dict[str, str], list[str], str]]:
    """Each mistake: the environment changes, the command (REMOTE: a manifest with nothing to upload), and what its
    one line must say."""
    missing_queue = f"{endpoint.url}/123456789012/{unique_name('nope')}"
    (dead_port,) = free_ports(1)
    hello = str(EXAMPLES / "hello.json")
    inbox = f"s3://{unique_name('missing')}/inbox/"
    return {
        "no credentials": ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
                           ["submit", hello, "--inbox", inbox], "AWS_ACCESS_KEY_ID"),
        "no region": ({"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, ["submit", REMOTE, "--queue", missing_queue],
                      "set AWS_REGION"),
        "missing bucket": ({}, ["submit", hello, "--inbox", inbox, "--s3-path-style"],
                           f"create the inbox bucket {inbox.split('/')[2]}"),
        "missing queue": ({}, ["submit", REMOTE, "--queue", missing_queue], "no such queue in region us-east-1"),
        "bad queue URL": ({}, ["submit", hello, "--queue", "tts-jobs"], "give the queue_url f5-batch bootstrap"),
        "endpoint unreachable": ({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead_port}"},
                                 ["submit", hello, "--inbox", inbox], "check the endpoint"),
        "bootstrap: no credentials": ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
                                      ["bootstrap", "--queue-name", "jobs"], "AWS_ACCESS_KEY_ID"),
        "bootstrap: bad queue name": ({}, ["bootstrap", "--queue-name", "tts jobs.fifo"], "no .fifo"),
        "bootstrap: endpoint unreachable": ({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead_port}"},
                                            ["bootstrap", "--queue-name", "jobs"], "check the endpoint"),
    }


@pytest.mark.parametrize("mistake", list(aws_mistakes(Endpoint("http://unused"))))
def test_an_aws_mistake_is_one_line_with_its_fix(moto_endpoint: Endpoint, tmp_path: Path, mistake: str) -> None:
    changes, args, fix = aws_mistakes(moto_endpoint)[mistake]
    remote = write_manifest(tmp_path, "remote", manifest(voice="s3://voices/narrator.wav"))
    args = [str(remote) if arg == REMOTE else arg for arg in args]
    env = {k: v for k, v in {**moto_endpoint.env(), **QUICK_RETRIES, **changes}.items() if v != ""}
    line = one_line(f5_batch(env, *args))
    assert line.startswith(f"f5-batch {args[0]}: ") and fix in line, line
    assert "— fix: " in line


def test_an_invalid_parameter_names_the_value_to_correct() -> None:
    exc = ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "Can only include alphanumeric"},
                       "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateQueue")
    said = explain(exc, what="the queue tts.jobs")
    assert "InvalidParameterValue (HTTP 400)" in said.detail and "Can only include alphanumeric" in said.detail
    assert said.fix == "correct the value the message names (the queue tts.jobs)"


# --- validate --------------------------------------------------------------------------------------------------


def test_validate_reports_every_problem_of_a_manifest_with_its_code(tmp_path: Path) -> None:
    bad = write_manifest(tmp_path, "bad", {"text": "\u200b", "voice": "../v.wav", "voice_language": "klingon",
                                           "speeed": 1, "speed": 9})
    good = write_manifest(tmp_path, "good", manifest())
    out = f5_batch({}, "validate", str(bad), str(good))
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines() == [
        f"{bad}: invalid_manifest: voice_language: 'klingon' is not a language Whisper knows; use a code such as en, "
        "de, zh or a name such as english",
        f"{bad}: invalid_manifest: speed: Input should be less than or equal to 3",
        f"{bad}: invalid_manifest: speeed: unknown field (check the spelling; see `f5-batch schema`)",
        f"{bad}: text_unusable: text has nothing to speak: it holds only invisible characters (zero-width, format "
        "or combining marks, such as U+200B); send text with words in it",
        f"{bad}: voice_not_allowed: voice '../v.wav' must be a relative path inside the inbox folder (no '..', no "
        "absolute paths)",
        f"{good}: ok (id good, seed {seed_from_id('good')})",
    ]


def test_validate_checks_every_voice_and_the_script(tmp_path: Path) -> None:
    story = write_manifest(tmp_path, "story", manifest("Hi [town] <break time=\"20s\"/> [cuntry] there", voices={
        "town": {"voice": "../town.wav"}, "country": {"voice": "s3://other-bucket/c.wav"}}))
    out = f5_batch({}, "validate", "--inbox", "s3://my-inbox/inbox/", str(story))
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines() == [
        f"{story}: invalid_manifest: text: break '<break time=\"20s\"/>' at position 10 (counting characters from 0) "
        "is longer than 10 s, the most one break may be",
        f"{story}: voice_not_allowed: voices.town.voice: voice '../town.wav' is not a valid object key",
        f"{story}: voice_not_allowed: voices.country.voice: voice 's3://other-bucket/c.wav' is in bucket "
        "'other-bucket', which is not in the allow-list (F5B_VOICE_BUCKETS)",
    ]


def test_validate_json_and_the_rules_of_an_s3_inbox(tmp_path: Path) -> None:
    elsewhere = write_manifest(tmp_path, "elsewhere", manifest(voice="s3://other-bucket/v.wav"))
    out = f5_batch({"PATH": "/usr/bin"}, "validate", "--json", "--inbox", "s3://my-inbox/inbox/", str(elsewhere),
                   str(EXAMPLES / "hello.json"))
    assert out.returncode == 1, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    assert report["ok"] is False
    first, second = report["files"]
    assert (first["ok"], first["id"], second["ok"], second["id"]) == (False, None, True, "hello")
    assert first["problems"] == [{"code": "voice_not_allowed", "field": "voice",
                                  "message": "voice 's3://other-bucket/v.wav' is in bucket 'other-bucket', which is "
                                             "not in the allow-list (F5B_VOICE_BUCKETS)"}]
    allowed = f5_batch({"F5B_VOICE_BUCKETS": "my-inbox,other-bucket"}, "validate", "--inbox", "s3://my-inbox/inbox/",
                       str(elsewhere))
    assert allowed.returncode == 0, allowed.stdout
    usage = one_line(f5_batch({}, "validate", "--inbox", "gs://x/", str(elsewhere)))
    assert "'gs' is not a supported location" in usage
