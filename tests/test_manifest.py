from __future__ import annotations

import json

import jsonschema
import pytest

from processor.errors import InvalidJson, InvalidManifest, PermanentError
from processor.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_TEXT_CHARS,
    manifest_schema,
    parse_manifest,
    safe_id,
    seed_from_id,
)

from tests.support.manifests import manifest
from tests.support.paths import EXAMPLES, REPO, VOICE_TEXT
from tests.support.workers import run_cli

SCHEMA_FILE = REPO / "manifests" / "schema.json"


def parse(data: object, name: str = "job-1"):
    return parse_manifest(json.dumps(data).encode(), name)


def test_defaults_are_f5_tts_defaults() -> None:
    m = parse(manifest())
    assert (m.id, m.format, m.speed, m.nfe_step, m.cfg_strength) == ("job-1", "wav", 1.0, 32, 2.0)
    assert (m.sway_sampling_coef, m.cross_fade, m.remove_silence, m.seed) == (-1.0, 0.15, False, None)


def test_id_defaults_to_file_stem_and_explicit_id_wins() -> None:
    assert parse(manifest(), "from-file").job_id == "from-file"
    assert parse(manifest(id="explicit.id_2"), "from-file").job_id == "explicit.id_2"


def test_seed_is_derived_from_id_when_absent() -> None:
    a, b = parse(manifest(), "alpha"), parse(manifest(), "alpha")
    assert a.effective_seed == b.effective_seed == seed_from_id("alpha")
    assert parse(manifest(), "beta").effective_seed != a.effective_seed
    assert parse(manifest(seed=7), "alpha").effective_seed == 7


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (manifest(speeed=1.2), "speeed: unknown field"),
        (manifest(speed="fast"), "speed"),
        (manifest(speed=10), "speed"),
        (manifest(nfe_step=1.5), "nfe_step"),
        (manifest(seed=-1), "seed"),
        (manifest(format="aac"), "format"),
        (manifest(remove_silence="yes"), "remove_silence"),
        (manifest(text="   \n\t"), "text"),
        (manifest(text=""), "text"),
        (manifest(text="a" * (MAX_TEXT_CHARS + 1)), "text"),
        (manifest(id="../escape"), "id"),
        (manifest(id="-leading-dash"), "id"),
        (manifest(version=2), "version"),
        ({"voice": "v.wav", "voice_text": "x"}, "text: Field required"),
        ({"text": "hi", "voice_text": "x"}, "voice: Field required"),
    ],
)
def test_schema_violations_are_invalid_manifest(data: dict, fragment: str) -> None:
    with pytest.raises(InvalidManifest) as err:
        parse(data)
    assert err.value.code == "invalid_manifest"
    assert fragment in err.value.message


@pytest.mark.parametrize("body", [b"{not json", b'{"text": "unterminated', b"\xff\xfe\x00garbage", b""])
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJson) as err:
        parse_manifest(body, "job")
    assert err.value.code == "invalid_json"


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null"])
def test_non_object_is_invalid_manifest(body: bytes) -> None:
    with pytest.raises(InvalidManifest, match="must be a JSON object"):
        parse_manifest(body, "job")


@pytest.mark.parametrize("voice_text", [None, "", "   "])
def test_a_manifest_without_voice_text_leaves_the_transcript_to_a_sidecar_or_asr(voice_text: str | None) -> None:
    """Blank is F5-TTS's "transcribe it": here it is the same as absent; the worker then looks for the transcript."""
    data = manifest()
    if voice_text is None:
        del data["voice_text"]
    else:
        data["voice_text"] = voice_text
    assert parse(data).voice_text is None


@pytest.mark.parametrize("language", ["en", "English", "zh", "yue"])
def test_voice_language_takes_whisper_codes_and_names(language: str) -> None:
    assert parse(manifest(voice_language=language)).voice_language == language.lower()


@pytest.mark.parametrize("language", ["xx", "klingon", "en-US"])
def test_a_language_whisper_does_not_know_is_invalid(language: str) -> None:
    with pytest.raises(InvalidManifest, match="not a language Whisper knows"):
        parse(manifest(voice_language=language))


def test_the_language_list_is_transformers_own() -> None:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    from processor.languages import WHISPER_LANGUAGE_NAMES, WHISPER_LANGUAGES

    assert WHISPER_LANGUAGES == set(LANGUAGES) and WHISPER_LANGUAGE_NAMES == set(TO_LANGUAGE_CODE) - set(LANGUAGES)


def test_oversized_manifest_is_refused_before_parsing() -> None:
    body = b'{"text": "' + b"a" * MAX_MANIFEST_BYTES + b'"}'
    with pytest.raises(InvalidManifest, match="limit"):
        parse_manifest(body, "job")


def test_bad_file_name_without_id_is_reported() -> None:
    with pytest.raises(PermanentError, match="not a valid job id"):
        parse(manifest(), "has spaces")
    assert parse(manifest(id="ok"), "has spaces").job_id == "ok"


def test_safe_id_is_valid_and_distinct() -> None:
    pattern = manifest_schema()["properties"]["id"]["anyOf"][0]["pattern"]
    import re

    made = {safe_id(n) for n in ["has spaces", "has_spaces", "../../etc", ".hidden", "ü"]}
    assert len(made) == 5
    assert all(re.match(pattern, m) for m in made)
    assert safe_id("plain-id") == "plain-id"


def test_committed_schema_matches_the_model() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == manifest_schema(), "run `make schema` and commit the result"


def test_schema_command_prints_the_committed_schema() -> None:
    out = run_cli("schema")
    assert out.returncode == 0, out.stderr
    assert out.stdout == SCHEMA_FILE.read_text()


def test_examples_pass_both_pydantic_and_an_independent_json_schema_validator() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    examples = sorted(EXAMPLES.glob("*.json"))
    assert len(examples) >= 3
    for path in examples:
        data = json.loads(path.read_text())
        jsonschema.validate(data, schema)
        assert parse_manifest(path.read_bytes(), path.stem).voice_text == VOICE_TEXT
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest(speeed=1), schema)
