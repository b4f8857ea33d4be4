"""Style gates the codebase holds itself to: ruff (with a complexity limit) and strict mypy."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    out = run("ruff", "check", "processor", "tests", "scripts", "bench")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    out = run("mypy", "processor", "bench")
    assert out.returncode == 0, out.stdout + out.stderr
