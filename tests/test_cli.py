"""The command line as a user meets it, and the README's promises about it."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processor.flags import flag
from processor.settings import Settings

from tests.support.manifests import manifest, write_manifest
from tests.support.paths import EXAMPLES, REPO, VOICE
from tests.support.results import all_results
from tests.support.workers import run_cli


def test_console_script_and_module_are_the_same_command() -> None:
    script = Path(sys.executable).with_name("f5-batch")
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    by_module = run_cli("--help")
    assert by_module.returncode == 0
    assert by_script.stdout.replace("f5-batch", "X") == by_module.stdout.replace("f5-batch", "X")
    for command in ("run", "submit", "validate", "schema"):
        assert command in by_module.stdout


def test_every_command_has_help_with_a_description_an_example_and_its_exit_status() -> None:
    from processor.cli import build_parser

    [commands] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    for name, parser in commands.choices.items():
        text = parser.format_help()
        assert parser.description, name
        assert "example" in text and f"f5-batch {name}" in text.split("example", 1)[1], name
        assert "exit status" in text, name
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help:
                assert "default" in action.help or "%(default)" in action.help, (name, action.option_strings)


def test_submit_drops_manifests_and_their_voice_into_the_inbox(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    out = run_cli("submit", str(EXAMPLES / "hello.json"), str(EXAMPLES / "chapter-flac.json"), "--inbox", str(inbox))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in inbox.glob("*.json")) == ["chapter-flac.json", "hello.json"]
    assert (inbox / "voices" / "narrator.wav").read_bytes() == (EXAMPLES / "voices" / "narrator.wav").read_bytes()
    assert not [p for p in inbox.rglob(".*") if p.is_file()], "no temporary files left"
    again = run_cli("submit", str(EXAMPLES / "hello.json"), "--inbox", str(inbox))
    assert again.returncode == 1 and "already waiting" in again.stderr


def test_submit_to_an_inbox_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_text("not a folder")
    out = run_cli("submit", str(EXAMPLES / "hello.json"), "--inbox", str(tmp_path / "inbox" / "jobs"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [f"f5-batch submit: inbox {str(tmp_path / 'inbox' / 'jobs')!r}: "
                                               f"{str(tmp_path / 'inbox')!r} is not a folder"]


def test_submit_refuses_invalid_manifests_with_their_code(tmp_path: Path) -> None:
    src = tmp_path / "src"
    bad = write_manifest(src, "typo", manifest(speeed=2))
    escape = write_manifest(src, "escape", manifest(voice="../../etc/passwd"))
    good = write_manifest(src, "good", manifest())
    (src / "voices").mkdir()
    shutil.copyfile(VOICE, src / "voices" / "narrator.wav")  # the voice goes along with the manifest
    out = run_cli("submit", str(bad), str(escape), str(good), "--inbox", str(tmp_path / "inbox"))
    assert out.returncode == 1
    assert "invalid_manifest" in out.stderr and "speeed" in out.stderr
    assert "voice_not_allowed" in out.stderr
    assert [p.name for p in (tmp_path / "inbox").glob("*.json")] == ["good.json"]


def test_validate_reports_each_file(tmp_path: Path) -> None:
    good = write_manifest(tmp_path, "good", manifest())
    bad = write_manifest(tmp_path, "bad", "{")
    out = run_cli("validate", str(good), str(bad))
    assert out.returncode == 1
    assert f"{good}: ok (id good" in out.stdout and f"{bad}: invalid_json" in out.stdout
    assert run_cli("validate", str(good)).returncode == 0


def test_run_without_a_seeded_model_says_how_to_seed(tmp_path: Path) -> None:
    """Before the model loads: one line naming the check and a seed command that works, exit 2."""
    (tmp_path / "vol").mkdir()
    out = run_cli("run", "--once", "--volume", str(tmp_path / "vol"), "--model", "F5TTS_v1_Base",
                  "--inbox", str(tmp_path / "in"), "--outbox", str(tmp_path / "out"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("f5-batch run: model.complete: ")
    assert line.endswith(f"fix: f5-batch seed --volume {tmp_path / 'vol'} --model F5TTS_v1_Base")


def test_run_rejects_bad_configuration(tmp_path: Path) -> None:
    out = run_cli("run", "--once", "--inbox", str(tmp_path), env={"F5B_MAX_ATTEMPTS": "0"})
    assert out.returncode == 2 and "F5B_MAX_ATTEMPTS '0'" in out.stderr


@pytest.mark.parametrize("where", ["inbox", "outbox"])
@pytest.mark.parametrize("location", ["gs://b/in/", "http://example.com/in/", "s3:/x", "S3://b/in/"])
def test_an_unknown_kind_of_location_fails_at_start_up_in_one_line(tmp_path: Path, where: str,
                                                                   location: str) -> None:
    """Before the model loads (the volume here has none: loading it would fail with exit 1) and before any folder."""
    folders = {"inbox": str(tmp_path / "in"), "outbox": str(tmp_path / "out"), where: location}
    started = time.monotonic()
    out = run_cli("run", "--once", "--volume", str(tmp_path / "no-volume"),
                  "--inbox", folders["inbox"], "--outbox", folders["outbox"])
    assert (out.returncode, out.stdout) == (2, ""), out.stdout + out.stderr
    assert time.monotonic() - started < 5
    [line] = out.stderr.strip().splitlines()
    assert location in line and "folder path or s3://bucket/prefix/" in line and "Traceback" not in line
    assert list(tmp_path.iterdir()) == [] and not (REPO / location.split(":")[0]).exists()
    assert not (REPO / f"{location.split(':')[0]}:").exists()


def test_environment_variables_configure_the_worker(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("F5B_MODEL", "tiny")
    monkeypatch.setenv("F5B_MAX_ATTEMPTS", "5")
    settings = Settings(inbox="flag-wins")
    assert (settings.model, settings.max_attempts, settings.inbox) == ("tiny", 5, "flag-wins")


def test_readme_configuration_table_matches_settings() -> None:
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\w+) \| `(--[\w-]+)` \| `(F5B_\w+)` \| ([^|]+) \|", readme, flags=re.M)
    documented = {name: (option, env, default.strip()) for name, option, env, default in rows}
    assert set(documented) == set(Settings.model_fields), "README configuration table is out of date"
    run_help = run_cli("run", "--help").stdout
    for name, (option, env, default) in documented.items():
        assert (option, env) == (flag(name), f"F5B_{name.upper()}")
        assert option in run_help and env in run_help, name
        field = Settings.model_fields[name]
        if field.default is None:
            assert default == "none", name
        elif field.default_factory is None and name not in ("processing_dir", "voice_buckets"):
            assert default == f"`{field.default}`", name


def test_readme_quickstart_is_two_make_targets_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo MODEL=tiny", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: setup$", makefile, re.M) and re.search(r"^test: setup$", makefile, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    assert shutil.which("make")


def test_make_demo_processes_the_examples_offline(tmp_path: Path) -> None:
    """The quickstart's main command, with its folders moved to a temporary place."""
    out = subprocess.run(
        ["make", "demo", "MODEL=tiny", f"VOLUME={tmp_path}/volume", f"INBOX={tmp_path}/inbox",
         f"OUTBOX={tmp_path}/outbox"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "noise, not speech" in out.stdout
    results = all_results(tmp_path / "outbox")
    assert set(results) == {"hello", "chapter-1", "draft-0001", "story", "acx-chapter"}
    assert all(r["status"] == "succeeded" and r["model"] == "tiny" for r in results.values())
