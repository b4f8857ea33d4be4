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

# The story's two other voices (manifests/examples/story.json): other espeak-ng voices, each with its sidecar.
town="Good morning to you. I live in the town, where the larder is always full."
espeak-ng -v en-us+f3 -s 165 -p 70 -w "$out/town.wav" "$town"
printf '%s\n' "$town" > "$out/town.txt"
country="Good evening, friend. At home in the fields I eat my roots in peace."
espeak-ng -v en-gb+m3 -s 135 -p 35 -w "$out/country.wav" "$country"
printf '%s\n' "$country" > "$out/country.txt"
for voice in town country; do
  echo "wrote $out/$voice.wav ($(soxi -D "$out/$voice.wav" 2>/dev/null || echo '?') s)"
done
