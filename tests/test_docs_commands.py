"""Every command the README and docs/ show is run, or parsed where it needs what a test cannot have.

The commands are read from the pages' ```sh blocks, so a new one cannot slip in untested:
- every `f5-batch` command line parses with the real parser;
- the AWS story (bootstrap, upload a voice and a manifest, run the worker, read the result, the IAM policy, doctor)
  runs in order against moto with the AWS CLI, names made unique, the worker bounded with `--once`;
- what needs the Hugging Face hub, a pod's volume, Docker or make is parsed only, and says why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.cli import build_parser
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name
from tests.support.paths import REPO, VOICE

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
# What a documented command needs that the suite cannot give it: parsed, never run. Patterns match whole lines.
NOT_RUN = {
    r"make .*": "the quickstart's targets: tests/test_cli.py checks them and runs make demo",
    r"docker .*": "needs Docker and a registry: tests/test_image.py checks Dockerfile.runpod",
    r"f5-batch seed --volume /runpod-volume( .*)?": "fetches F5TTS_v1_Base (1.4 GB) from the hub onto a pod's volume",
    r"f5-batch seed --volume \./volume --random .*": "writes 1.35 GB of random weights: bench/ does, the suite not",
    r"f5-batch doctor( --json)?": "a pod's doctor on its /runpod-volume: the troubleshooting page's doctor line runs",
    r"f5-batch doctor --json && f5-batch run|f5-batch doctor && f5-batch run|bash -c .*":
        "a pod's start command: its parts run in the AWS story",
}


@dataclass(frozen=True)
class Command:
    page: str
    line: str  # continuations joined, comment removed

    @property
    def words(self) -> list[str]:
        return shlex.split(self.line)


def commands(page: Path) -> Iterator[Command]:
    for block in re.findall(r"^[ \t]*```(?:sh|bash|console)\n(.*?)^[ \t]*```", page.read_text(), flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s+)#\s.*$", "", line)  # a comment: `# …` at the start or after a space
            line = re.sub(r"\s+", " ", line).strip()
            if line:
                yield Command(page.name, line)


ALL = [command for page in PAGES for command in commands(page)]


def f5_batch_argvs(words: list[str]) -> Iterator[list[str]]:
    """Each `f5-batch …` invocation in a command line: between `&&`, `|` and `;`, and inside `bash -c "…"`."""
    current: list[str] = []
    for word in [*words, "&&"]:
        if word in ("&&", "|", ";", "||"):
            if current[:2] == ["bash", "-c"]:
                yield from f5_batch_argvs(shlex.split(current[2]))
            elif current[:1] == ["exec"]:
                yield from f5_batch_argvs(current[1:])
            elif current[:1] == ["f5-batch"]:
                yield current
            current = []
        else:
            current.append(word)


def test_the_pages_show_commands_at_all() -> None:
    assert len(ALL) > 20 and any(c.line.startswith("f5-batch run") for c in ALL)


@pytest.mark.parametrize("command", [c for c in ALL if "f5-batch" in c.line], ids=lambda c: f"{c.page}:{c.line[:60]}")
def test_every_documented_f5_batch_command_parses(command: Command) -> None:
    for argv in f5_batch_argvs(command.words):
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{command.page}: `{' '.join(argv)}` does not parse (exit {exc.code})")


# --- the AWS story, against moto ---------------------------------------------------------------------------------


@dataclass
class Story:
    endpoint: Endpoint
    cwd: Path
    names: dict[str, str]
    ran: list[str]

    def localize(self, line: str) -> str:
        """The documented line with its names made unique and its endpoints made moto's (each replaced once)."""
        pattern = "|".join(re.escape(name) for name in sorted(self.names, key=len, reverse=True))
        return re.sub(pattern, lambda found: self.names[found.group(0)], line)

    def sh(self, command: Command, *extra: str, env: dict[str, str] | None = None) -> str:
        line = self.localize(command.line) + "".join(f" {shlex.quote(word)}" for word in extra)
        full_env = {**self.endpoint.env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
        out = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=self.cwd, env=full_env, capture_output=True,
                             text=True, timeout=300, check=False)
        assert out.returncode == 0, f"{command.page}: {line}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        self.ran.append(command.line)
        return out.stdout


def find(page: str, start: str) -> Command:
    [found] = [c for c in ALL if c.page == page and c.line.startswith(start)]
    return found


@pytest.fixture(scope="module")
def story(moto_endpoint: Endpoint, tiny_volume: Volume, tmp_path_factory: pytest.TempPathFactory) -> Story:
    cwd = tmp_path_factory.mktemp("story")
    (cwd / "docs").symlink_to(REPO / "docs")
    (cwd / "voice.wav").write_bytes(VOICE.read_bytes())
    queue = unique_name("tts-jobs")
    names = {
        "https://sqs.eu-west-1.amazonaws.com/123456789012/tts-jobs": f"{moto_endpoint.url}/123456789012/{queue}",
        "my-inbox": unique_name("my-inbox"), "my-outbox": unique_name("my-outbox"), "tts-jobs": queue,
        "eu-west-1": moto_endpoint.region, "/runpod-volume": str(tiny_volume.root), "./volume": str(cwd / "volume"),
        "/tmp/f5-batch-worker.json": str(cwd / "policy.json"), "f5-batch-worker": unique_name("f5-batch-worker"),
    }
    return Story(moto_endpoint, cwd, names, [])


def test_the_aws_story_runs_against_moto(story: Story, tiny_volume: Volume) -> None:
    made = dict(line.split("=", 1) for line in story.sh(find("README.md", "f5-batch bootstrap")).split())
    assert made["queue_url"].endswith(story.names["tts-jobs"])
    assert find("aws-setup.md", "f5-batch bootstrap").line in story.ran, "the same line on both pages"

    (story.cwd / "job.json").write_text(json.dumps({
        "id": "hello", "text": "Hello from the docs.", "voice": "voices/voice.wav",
        "voice_text": "The quick brown fox jumps over the lazy dog.", "nfe_step": 2}))
    story.sh(find("README.md", "aws s3 cp voice.wav"))
    story.sh(find("README.md", "aws s3 cp job.json"))
    story.sh(find("README.md", "f5-batch run --queue"), "--volume", str(tiny_volume.root), "--model", "tiny",
             "--once", env={"F5B_RECEIVE_WAIT_S": "2"})
    read = story.sh(find("outbox.md", "aws s3 cp s3://my-outbox/hello/result.json"))
    assert json.loads(read)["status"] == "succeeded", read
    # AWS CLI v1 sends `sqs` to its legacy host whatever AWS_ENDPOINT_URL says, as the page warns: --endpoint-url
    depth = story.sh(find("deploy-runpod.md", "aws sqs get-queue-attributes"), "--endpoint-url", story.endpoint.url,
                     env={"F5B_QUEUE": made["queue_url"]})
    assert json.loads(depth)["Attributes"]["ApproximateNumberOfMessages"] == "0", depth

    story.sh(find("aws-setup.md", "sed -e"))
    for start in ("aws iam create-policy", "aws iam create-user", "aws iam attach-user-policy",
                  "aws iam create-access-key"):
        story.sh(find("aws-setup.md", start), "--endpoint-url", story.endpoint.url)

    report = story.sh(find("troubleshooting.md", "f5-batch doctor --volume"), "--model", "tiny", "--json")
    assert json.loads(report)["ok"], report
    story.sh(find("README.md", "f5-batch seed --volume ./volume --tiny"))


def test_every_documented_command_runs_in_the_story_or_says_why_not(story: Story) -> None:
    """After the story: a command neither run nor excused in NOT_RUN is a documented command no test runs."""
    unexplained = [f"{c.page}: {c.line}" for c in ALL
                   if c.line not in story.ran and not any(re.fullmatch(pattern, c.line) for pattern in NOT_RUN)]
    assert not unexplained, "\n".join(unexplained)
