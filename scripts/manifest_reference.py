#!/usr/bin/env python3
"""Write docs/manifest.md, the manifest reference, from manifests/schema.json.

    python scripts/manifest_reference.py           # rewrite docs/manifest.md
    python scripts/manifest_reference.py --check   # exit 1 if docs/manifest.md is out of date

The schema is the single source (`make schema` regenerates it from the code); this page only
lays it out for people, so the two cannot drift (tests/test_docs.py runs `--check`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from processor.manifest import MAX_MANIFEST_BYTES  # noqa: E402  (needs the sys.path entry above)

SCHEMA = REPO / "manifests" / "schema.json"
EXAMPLE = REPO / "manifests" / "examples" / "chapter-flac.json"
OUTPUT = REPO / "docs" / "manifest.md"
TYPE_NAMES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "null": "null",
              "object": "object"}


def variants(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a property (`anyOf`), or the property itself."""
    return list(prop.get("anyOf", [prop]))


def type_of(prop: dict[str, Any]) -> str:
    names = []
    for option in variants(prop):
        if "const" in option:
            names.append(f"`{json.dumps(option['const'])}`")
        elif "enum" in option:
            names.append(" \\| ".join(f"`{value}`" for value in option["enum"]))
        elif option["type"] == "array":
            names.append(f"array of {type_of(option['items'])}")
        else:
            names.append(TYPE_NAMES[option["type"]])
    return " or ".join(names)


def limits_of(prop: dict[str, Any]) -> str:
    parts = []
    for option in variants(prop):
        if "minimum" in option or "maximum" in option:
            parts.append(f"{option.get('minimum', '−∞')} to {option.get('maximum', '∞')}")
        if "minLength" in option or "maxLength" in option:
            parts.append(f"{option.get('minLength', 0)} to {option['maxLength']:,} characters")
        if "pattern" in option:
            parts.append(f"`{option['pattern']}`")
        if "maxItems" in option:
            each = ", each once" if option.get("uniqueItems") else ""
            parts.append(f"{option.get('minItems', 0)} to {option['maxItems']} items{each}")
        if "maxProperties" in option:
            names = option["propertyNames"]
            parts.append(f"at most {option['maxProperties']}; names `{names['pattern']}`, not "
                         f"`{names['not']['const']}`")
    return "; ".join(parts) or "–"


def default_of(name: str, prop: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "**required**"
    value = prop.get("default")
    return "none" if value is None else f"`{json.dumps(value)}`"


def field_rows(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | limits | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, prop in schema["properties"].items():
        meaning = prop["description"].replace("|", "\\|")
        cells = [f"`{name}`", type_of(prop), default_of(name, prop, required), limits_of(prop), meaning]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


# Hand-written: what the text means, which no schema says.
SCRIPTS = [
    "## Voices and pauses",
    "",
    "A manifest with a `voices` table speaks its text in several voices, as F5-TTS's `infer_cli` does with",
    "its `story.toml`: `[name]` in the text switches to that voice until the next tag, `[main]` switches back",
    "to the manifest's own `voice`, and the text before the first tag is `main`'s. Tags are `[` + letters,",
    "digits or `_` + `]`, read with infer_cli's own expressions (`(?=\\[\\w+\\])` to split, `\\[(\\w+)\\]`",
    "to pick the voice); each piece is stripped of surrounding whitespace. Unlike infer_cli, a tag the table",
    "does not name fails the job with `invalid_manifest`, naming the voices there are, instead of speaking in",
    "`main`. **Without a `voices` table, tags are not read**: `[1]` or `[sic]` in the text is spoken as it",
    "always was.",
    "",
    "Each voice is a clip with the same rules as `voice`: its transcript is its `voice_text`, else the sidecar",
    "next to its clip, else ASR; its `speed` and `remove_silence` default to the manifest's.",
    "",
    "A pause is SSML's `<break time=\"500ms\"/>` or `<break time=\"1.5s\"/>` (either quote; spaces around `=`",
    "and before `/>` are fine); a bare `<break/>` is 0.5 s, and `time=\"0s\"` splits without a silence. A",
    "break is at most 10 s, and all of a manifest's breaks at most 600 s; breaks side by side add up. It",
    "splits the text there, and the voice carries on after it. Breaks are read with or without a voices",
    "table. Any other text starting `<break` and a space, `/` or `>` is a malformed break (`invalid_manifest`);",
    "other tag-like text (`<breakfast>`, `<b>`, `<Break/>`) is spoken as text.",
    "",
    "```json",
    "{",
    '  "text": "The road was long. [town] Are you lost? <break time=\\"1s\\"/> [country] Not at all. [main] '
    'And on they went.",',
    '  "voice": "voices/narrator.wav",',
    '  "voices": {',
    '    "town": {"voice": "voices/town.flac", "voice_text": "Some call me nature."},',
    '    "country": {"voice": "voices/country.flac", "speed": 0.9}',
    "  }",
    "}",
    "```",
    "",
    "That is `main`, `town`, a one-second pause, `country` (its transcript from `voices/country.txt` or",
    "ASR), then `main` again.",
    "",
    "Each spoken piece is synthesized as a text of its own, in its voice, at its voice's speed: chunked at",
    "sentence ends, its chunks batched with other jobs'. The first piece takes the manifest's `seed`; piece",
    "*i* (from 0) takes the first four bytes of SHA-256(`\"<seed>:<i>\"`), so no two pieces share noise. The",
    "pieces are joined with the manifest's `cross_fade` and, where a break stands between two, with that much",
    "exact silence and no fade. The job's `log.jsonl` has a `segment` line for each piece (its voice, start",
    "and length in seconds), and `result.json`'s `voices` the transcript each table voice was given.",
    "",
    "## Models",
    "",
    "`model` names a folder under the worker's volume's `models/`: a model `f5-batch seed --model NAME` put",
    "there (`F5TTS_v1_Base`, `F5TTS_Base`, E2-TTS's `E2TTS_Base`, each with its Vocos vocoder), or a fine-tune",
    "`f5-batch seed --from DIR --name NAME --arch ARCH` did (a checkpoint F5-TTS training wrote, with its",
    "`vocab.txt`; DiT or UNetT). Without it the job uses the worker's `F5B_MODEL`. A name the volume does not",
    "have fails the job with `model_not_found`, whose message lists the models that are there. The worker loads",
    "a model on the first job that needs it and keeps it while it fits (`F5B_MAX_MODELS` on CPU,",
    "`F5B_MODEL_MEMORY_BYTES` on a GPU); a batch holds jobs of one model only.",
    "",
]


def render(schema: dict[str, Any], example: str) -> str:
    strict = "rejected" if schema.get("additionalProperties") is False else "ignored"
    lines = [
        "# Manifest reference",
        "",
        "<!-- Generated by scripts/manifest_reference.py from manifests/schema.json: do not edit by hand. -->",
        "",
        f"{schema['description']}",
        "",
        "A manifest is one JSON object, UTF-8, at most "
        f"{MAX_MANIFEST_BYTES // 1024} KiB: a `.json` file in the inbox, or the body of a queue message.",
        f"Unknown fields are {strict}. Schema: `manifests/schema.json` (`$id` `{schema['$id']}`, "
        f"JSON Schema {schema['$schema'].rsplit('/', 2)[-2]}); `f5-batch schema` prints it and "
        "`f5-batch validate FILE...` checks manifests against it, and against the worker's other rules (the file, "
        "the id, the text, the voice path), without running them, reporting every problem.",
        "",
        "## Fields",
        "",
        *field_rows(schema),
        "",
        "### A voice of the voices table",
        "",
        *field_rows(schema["$defs"]["VoiceEntry"]),
        "",
        *SCRIPTS,
        "## Beyond the schema",
        "",
        "Types are strict (`\"32\"` is not a number, `1` is not `true`). The worker also checks what the schema",
        "cannot express, and fails the job with a stable code:",
        "",
        "- `invalid_manifest`: `text`, `voice` or `voice_text` blank (only whitespace) or holding control or",
        "  bidirectional characters; duplicate keys; a manifest over "
        f"{MAX_MANIFEST_BYTES // 1024} KiB; any schema violation above.",
        "- `invalid_json`: not JSON, not UTF-8, NaN or infinite numbers, huge numbers, deep nesting.",
        "- `voice_text_required`: no transcript of the voice clip.",
        "- `invalid_manifest` too: an unknown voice tag, a malformed break, a break over 10 s, breaks adding up",
        "  to over 600 s (see [Voices and pauses](#voices-and-pauses)).",
        "- `invalid_manifest` too: a `bitrate` with wav or flac, or outside what the format's encoder takes at",
        "  the job's rate; a `sample_rate` that encoder does not take; `true_peak_db` without `loudness`; a",
        "  subtitle format listed twice.",
        "- `text_unusable`: `text` holds nothing to speak, only invisible characters (zero-width spaces and",
        "  joiners, U+2060, U+FEFF, variation selectors, combining marks with nothing to combine with), or",
        "  only breaks and voice tags; or one voice's piece of it holds only invisible characters.",
        "- `voice_not_allowed`: a `voice` outside where voices may come from. With a local inbox it is a",
        "  path relative to the inbox folder (no `..`, no absolute path, no URL), and its real path, symbolic",
        "  links followed, is inside the inbox folder too; with an S3 inbox, a key in the inbox bucket or",
        "  `s3://bucket/key` with the bucket in `F5B_VOICE_BUCKETS` (no other URL), and never a key under the",
        "  outbox prefix (another job's result).",
        "",
        "Every code is listed in [the outbox contract](outbox.md#error-codes).",
        "",
        "## Example",
        "",
        f"`manifests/examples/{EXAMPLE.name}`:",
        "",
        "```json",
        example.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/manifest.md differs from the schema")
    args = parser.parse_args(argv)
    text = render(json.loads(SCHEMA.read_text(encoding="utf-8")), EXAMPLE.read_text(encoding="utf-8"))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print("docs/manifest.md is out of date: run python scripts/manifest_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
