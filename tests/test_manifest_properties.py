"""Property tests: whatever bytes arrive, the parsers answer with a Manifest or a PermanentError, nothing else."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processor.errors import PermanentError
from processor.manifest import ID_PATTERN, Manifest, parse_manifest, printable, safe_id
from processor.storage.local import voice_path

from tests.support.paths import VOICE_TEXT


def is_forbidden(char: str) -> bool:
    """The manifest's rule, restated: C0/C1 controls but tab/LF/CR, surrogates, noncharacters, bidi controls."""
    cp = ord(char)
    return ((unicodedata.category(char) == "Cc" and char not in "\t\n\r") or 0xD800 <= cp <= 0xDFFF
            or 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE or 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069)


def sounds(char: str) -> bool:
    """The rule for text worth speaking, restated: something other than whitespace, format characters (zero-width
    ones), combining marks alone, and the Hangul fillers."""
    return (not char.isspace() and unicodedata.category(char) not in {"Cf", "Mn", "Me", "Zs", "Zl", "Zp"}
            and char not in "\u115f\u1160\u3164\uffa0")


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ID_RE = re.compile(ID_PATTERN)
FIELDS = ["id", "text", "voice", "voice_text", "format", "speed", "nfe_step", "cfg_strength", "sway_sampling_coef",
          "seed", "remove_silence", "cross_fade", "version", "$comment"]
FORBIDDEN = [0x00, 0x07, 0x08, 0x0B, 0x0C, 0x1B, 0x7F, 0x85, 0x9B, 0xD800, 0xDFFF, 0x202A, 0x202E, 0x2066, 0x2069,
             0xFDD0, 0xFDEF, 0xFFFE, 0xFFFF, 0x1FFFE, 0x10FFFF]

# Any code point, lone surrogates included (a file name with undecodable bytes holds some), biased to bad ones.
any_text = st.text(alphabet=st.characters(exclude_categories=[]) | st.sampled_from([chr(c) for c in FORBIDDEN]),
                   max_size=40)
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | any_text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
valid_fields = st.fixed_dictionaries({
    "text": st.just("Hello there."),
    "voice": st.just("voices/narrator.wav"),
    "voice_text": st.just(VOICE_TEXT),
}, optional={
    "id": st.from_regex(ID_RE, fullmatch=True),
    "format": st.sampled_from(["wav", "flac", "mp3", "ogg"]),
    "speed": st.floats(0.3, 3.0),
    "nfe_step": st.integers(2, 128),
    "seed": st.integers(0, 2**32 - 1),
    "remove_silence": st.booleans(),
})
file_names = any_text | st.from_regex(ID_RE, fullmatch=True)


def check_parse(body: bytes, name: str) -> Manifest | None:
    """The contract: a Manifest whose id and seed are usable, or a PermanentError with a code and a message."""
    try:
        manifest = parse_manifest(body, name)
    except PermanentError as err:
        assert err.code in {"invalid_json", "invalid_manifest", "voice_text_required", "text_unusable"}
        assert err.message and err.message.encode("utf-8"), "messages go into result.json: they must encode"
        return None
    assert ID_RE.fullmatch(manifest.job_id)
    assert 0 <= manifest.effective_seed <= 2**32 - 1
    for value in (manifest.text, manifest.voice, manifest.voice_text):
        assert value.strip() and value.encode("utf-8")
    return manifest


@PROPERTY
@given(body=st.binary(max_size=2000), name=file_names)
@example(body=b"[" * 100_000, name="deep")
@example(body=b'{"seed": 1' + b"0" * 5000 + b"}", name="digits")
@example(body=b'{"text": NaN}', name="nan")
def test_random_bytes(body: bytes, name: str) -> None:
    check_parse(body, name)


@PROPERTY
@given(value=json_values, name=file_names)
def test_random_json_values(value: Any, name: str) -> None:
    check_parse(json.dumps(value).encode(), name)


@PROPERTY
@given(base=valid_fields, extra=st.dictionaries(st.sampled_from(FIELDS) | any_text, json_values, max_size=4),
       name=file_names)
def test_valid_fields_mixed_with_random_ones(base: dict[str, Any], extra: dict[str, Any], name: str) -> None:
    check_parse(json.dumps({**base, **extra}).encode(), name)  # ASCII JSON: lone surrogates travel as escapes


@PROPERTY
@given(base=valid_fields, name=st.from_regex(ID_RE, fullmatch=True))
def test_valid_manifests_are_accepted(base: dict[str, Any], name: str) -> None:
    manifest = check_parse(json.dumps(base).encode(), name)
    assert manifest is not None
    assert manifest.job_id == base.get("id", name)
    assert manifest.effective_seed == base.get("seed", manifest.effective_seed)


@PROPERTY
@given(text=st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs", "Cn"]) | st.sampled_from("\t\n\r"),
                    min_size=1, max_size=200).filter(lambda t: t.strip() and not any(map(is_forbidden, t))))
def test_ordinary_unicode_text_is_accepted(text: str) -> None:
    """Accents, CJK, emoji, private use, tab/newline/CR: valid; sent as raw UTF-8, not escapes. Only invisible
    characters (zero-width, format, lone combining marks): nothing to speak."""
    body = json.dumps({"text": text, "voice": "v.wav", "voice_text": "hi"}, ensure_ascii=False).encode()
    if not any(map(sounds, text)):
        with pytest.raises(PermanentError) as err:
            parse_manifest(body, "job")
        assert err.value.code == "text_unusable"
        return
    manifest = check_parse(body, "job")
    assert manifest is not None and manifest.text == text


@PROPERTY
@given(text=st.text(max_size=50), at=st.integers(0, 50), char=st.sampled_from(FORBIDDEN),
       field=st.sampled_from(["text", "voice_text", "voice"]))
def test_a_forbidden_character_is_named_by_field_and_code_point(text: str, at: int, char: int, field: str) -> None:
    data = {"text": "Hello.", "voice": "v.wav", "voice_text": "hi"}
    data[field] = "ok " + text[:at] + chr(char) + text[at:]
    body = json.dumps(data).encode()  # ASCII JSON: "\ud800" is valid JSON text for a lone surrogate
    with pytest.raises(PermanentError) as err:
        parse_manifest(body, "job")
    assert err.value.code == "invalid_manifest"
    assert err.value.message.startswith(f"{field}: contains ")
    assert "U+" in err.value.message and err.value.message.encode("utf-8")


@PROPERTY
@given(name=any_text)
def test_safe_id_is_always_a_valid_id_and_printable_always_encodes(name: str) -> None:
    assert ID_RE.fullmatch(safe_id(name))
    shown = printable(name)
    shown.encode("utf-8")  # no lone surrogate left
    assert not any(map(is_forbidden, shown))


@PROPERTY
@given(ref=st.text(max_size=40) | st.lists(st.sampled_from(["..", ".", "a", "/", "voices", "\\", "s3:", "//"]),
                                           max_size=8).map("".join))
def test_a_voice_reference_never_resolves_outside_the_inbox(ref: str) -> None:
    root = Path("/inbox")
    try:
        path = voice_path(root, ref)
    except PermanentError as err:
        assert err.code == "voice_not_allowed"
        return
    normalized = PurePosixPath(os.path.normpath(path))
    assert normalized == root or root in normalized.parents
