#!/usr/bin/env bash
# Regenerates the example voice clip with espeak-ng (Debian package espeak-ng).
# The transcript is exact because the clip is spoken from it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=manifests/examples/voices
text="The quick brown fox jumps over the lazy dog. Every job gets its own voice and its own seed."
mkdir -p "$out"
espeak-ng -v en-us -s 150 -w "$out/narrator.wav" "$text"
printf '%s\n' "$text" > "$out/narrator.txt"
echo "wrote $out/narrator.wav ($(soxi -D "$out/narrator.wav" 2>/dev/null || echo '?') s)"
