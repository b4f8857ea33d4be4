#!/usr/bin/env bash
# One set-up step for a fresh machine: system packages, then .venv with the project and its test tools.
# Idempotent and quick when nothing changed (a stamp records the pyproject it installed).
set -euo pipefail
cd "$(dirname "$0")/.."

# ffmpeg: pydub (reference-clip preparation) and torchaudio/torchcodec decode through it.
# jq: the docs read result.json with it, and a test runs every documented command.
missing=""
for tool in ffmpeg jq; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing Debian packages:$missing"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.f5-batch-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing f5-batch and its dependencies into .venv (the first time takes a few minutes: torch is large)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
