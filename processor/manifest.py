"""The job manifest: what a user asks for, validated before any work is done."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.functional_validators import field_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidationInfo

from processor.encoding import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, bitrate_problem, sample_rate_problem
from processor.errors import CATALOGUE, F5BatchError, InvalidJson, InvalidManifest, TextUnusable
from processor.languages import WHISPER_LANGUAGE_NAMES, WHISPER_LANGUAGES
from processor.loudness import LOUDNESS_DESCRIPTION, LoudnessValue
from processor.script import MAIN, Piece, parse_script

MANIFEST_VERSION: Literal[1] = 1
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a folder name under <volume>/models/, never a path
MAX_TEXT_CHARS = 50_000
MAX_MANIFEST_BYTES = 256 * 1024  # the historical SQS message limit; keeps a manifest a manifest
AUDIO_FORMATS = ("wav", "flac", "mp3", "ogg", "opus", "m4a")
LOSSY_FORMATS = ("mp3", "ogg", "opus", "m4a")
MIN_BITRATE_KBPS, MAX_BITRATE_KBPS = 16, 320
DEFAULT_SAMPLE_RATE = 24000  # F5-TTS's vocoders': what a job without a sample_rate is written at

MAX_REPORTED_PROBLEMS = 10
# A voices table's names: what infer_cli's `\w+` matches, in ASCII. JSON Schema's `\w` is ASCII (ECMA-262) while
# Python's is Unicode, so an ASCII name is one every schema validator, the worker and infer_cli read alike.
VOICE_NAME_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
MAX_VOICES = 16

_ID_RE = re.compile(ID_PATTERN)
_VOICE_NAME_RE = re.compile(VOICE_NAME_PATTERN)

# Characters a text to speak (or a path) never legitimately holds: C0/C1 controls other than tab, newline
# and carriage return, lone surrogates, Unicode noncharacters, and the bidi embedding/override/isolate
# controls that make text display differently from what it is ("Trojan Source").
_FORBIDDEN_RE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufdd0-\ufdef"
    + "".join(rf"\U{plane + 0xFFFE:08x}\U{plane + 0xFFFF:08x}" for plane in range(0, 0x110000, 0x10000))
    + "]"
)

JobId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


MAX_VOICE_TEXT_CHARS = 2000


def forbidden_character(text: str) -> str | None:
    """What a text may not contain, said as a manifest's field says it; None when it is clean."""
    if (found := _FORBIDDEN_RE.search(text)) is None:
        return None
    return (f"contains {character_kind(found.group())} {code_point(found.group())} at position {found.start()} "
            f"(counting characters from 0); remove it")


def _no_forbidden_characters(value: Any) -> Any:
    if isinstance(value, str) and (found := _FORBIDDEN_RE.search(value)):
        raise PydanticCustomError(
            "forbidden_character",
            "contains {kind} {code_point} at position {position} (counting characters from 0); remove it",
            {"kind": character_kind(found.group()), "code_point": code_point(found.group()), "position": found.start()},
        )
    return value


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise PydanticCustomError("blank", "must not be blank (only whitespace)")
    return value


def _blank_transcript_is_none(value: Any) -> Any:
    """F5-TTS's convention: an empty reference text means "transcribe it"; here, "find it elsewhere"."""
    return None if isinstance(value, str) and not value.strip() else value


def _a_whisper_language(value: str | None) -> str | None:
    if value is not None and value.lower() not in WHISPER_LANGUAGES and value.lower() not in WHISPER_LANGUAGE_NAMES:
        raise PydanticCustomError("language", "'{value}' is not a language Whisper knows; use a code such as en, "
                                              "de, zh or a name such as english", {"value": value})
    return value.lower() if value is not None else None


def _a_voice_name(name: str) -> str:
    if not _VOICE_NAME_RE.fullmatch(name):
        raise PydanticCustomError("voice_name", "a voice's name is 1 to 64 letters (A-Z, a-z), digits or _, as its "
                                                "[name] tag in the text")
    if name == MAIN:
        raise PydanticCustomError("main_voice", "'main' is the manifest's own voice (its \"voice\"); name this one "
                                                "otherwise")
    return name


# Before-validators run last-listed first: forbidden characters are refused before a blank transcript means none.
Clean = BeforeValidator(_no_forbidden_characters)
NotBlank = AfterValidator(_not_blank)
VoicePath = Annotated[str, Clean, NotBlank, Field(min_length=1, max_length=1024)]
VoiceText = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=MAX_VOICE_TEXT_CHARS)] | None,
                      BeforeValidator(_blank_transcript_is_none), Clean, NotBlank]
VoiceLanguage = Annotated[Annotated[str, StringConstraints(min_length=2, max_length=40)] | None,
                          AfterValidator(_a_whisper_language)]
Speed = Annotated[float, Field(ge=0.3, le=3.0)]
VoiceName = Annotated[str, AfterValidator(_a_voice_name)]  # its JSON Schema is in manifest_schema

VOICE_DESCRIPTION = "Reference voice clip. Local inbox: a path relative to the inbox folder."
VOICE_TEXT_DESCRIPTION = ("Exact transcript of the voice clip. Default: the sidecar file next to the clip "
                          "(voices/narrator.wav → voices/narrator.txt), else the ASR model on the volume "
                          "transcribes it.")
VOICE_LANGUAGE_DESCRIPTION = ("Language of the voice clip for the ASR model (a Whisper language code or name, e.g. en "
                              "or english); default: detected.")


class VoiceEntry(BaseModel):
    """One voice of a manifest's voices table: a clip and its transcript as the manifest's own voice has them, and
    the speed and silence removal it speaks with (None: the manifest's)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="voice")

    voice: VoicePath = Field(..., description=VOICE_DESCRIPTION)
    voice_text: VoiceText = Field(None, description=VOICE_TEXT_DESCRIPTION)
    voice_language: VoiceLanguage = Field(None, description=VOICE_LANGUAGE_DESCRIPTION)
    speed: Speed | None = Field(None, description="Speaking rate of this voice. Default: the manifest's speed.")
    remove_silence: bool | None = Field(
        None, description="Cut long silences from this voice's segments. Default: the manifest's remove_silence."
    )


@dataclass(frozen=True)
class VoiceSpec:
    """What a voice is made from, whichever field it came from: the manifest's own voice or an entry of its voices
    table, with the manifest's speed and remove_silence filled in. Every voice is prepared from one of these."""

    voice: str
    voice_text: str | None
    voice_language: str | None
    speed: float
    remove_silence: bool


class Manifest(BaseModel):
    """One text to speak, in one voice or several. Unknown fields are rejected: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, title="f5-batch manifest")

    version: Literal[1] = Field(MANIFEST_VERSION, description="Manifest format version.")
    comment: str | None = Field(
        None, alias="$comment", description="Free text for people; ignored by the worker.", max_length=4000
    )
    id: JobId | None = Field(
        None,
        description="Job id: names the job's outbox folder. Default: the manifest file's name without .json.",
    )
    text: Annotated[str, Clean, NotBlank] = Field(
        ..., description="The text to speak. With a voices table, [name] switches to that voice ([main]: back to "
        "voice); <break time=\"1.5s\"/> is a pause.", min_length=1, max_length=MAX_TEXT_CHARS,
    )
    voice: VoicePath = Field(..., description=VOICE_DESCRIPTION)
    voice_text: VoiceText = Field(None, description=VOICE_TEXT_DESCRIPTION)
    voice_language: VoiceLanguage = Field(None, description=VOICE_LANGUAGE_DESCRIPTION)
    voices: dict[VoiceName, VoiceEntry] | None = Field(
        None, max_length=MAX_VOICES,
        description="More voices, by name: the text switches to one with [name] (F5-TTS infer_cli's tags). Without "
        "this table, [name] in the text is text.",
    )
    model: Annotated[str, StringConstraints(pattern=MODEL_PATTERN)] | None = Field(
        None, description="Model folder on the worker's volume (models/<name>/), e.g. F5TTS_v1_Base or a "
        "fine-tune seeded with `f5-batch seed --name`. Default: the worker's F5B_MODEL.",
    )
    format: Literal["wav", "flac", "mp3", "ogg", "opus", "m4a"] = Field(
        "wav", description="Audio format of the output: wav (16-bit), flac, mp3, ogg (Vorbis), opus (Ogg Opus) or "
        "m4a (AAC).")
    sample_rate: int | None = Field(
        None, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE,
        description="Sample rate of the output in Hz, resampled with soxr. mp3 and m4a take the MPEG rates (8000, "
        "11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000), opus 8000, 12000, 16000, 24000 or 48000 (it plays "
        "at 48000). Default: the model's (24000).")
    bitrate: int | None = Field(
        None, ge=MIN_BITRATE_KBPS, le=MAX_BITRATE_KBPS,
        description="Average bitrate of a lossy format (mp3, ogg, opus, m4a) in kbit/s, through ffmpeg; the range "
        "depends on the format and rate (m4a at most 6 per kHz, ogg at 24000 Hz at most 80). Default: opus 64, m4a "
        "96, mp3 and ogg libsndfile's default quality.")
    loudness: LoudnessValue | None = Field(
        None, description=LOUDNESS_DESCRIPTION + " One gain for the whole job. Default: F5B_LOUDNESS, else the "
        "audio as made.")
    true_peak_db: float | None = Field(
        None, ge=-20.0, le=0.0, allow_inf_nan=False,
        description="True-peak ceiling in dBTP, measured 4x oversampled, with a loudness target (default -1; -3 for "
        "acx); the gain is lowered to keep under it, never clipped.")
    subtitles: list[Literal["srt", "vtt"]] = Field(
        [], max_length=2, json_schema_extra={"uniqueItems": True},
        description="Subtitle files to write beside the audio (audio.srt, audio.vtt), from its timed segments; each "
        "at most once.")
    speed: Speed = Field(1.0, description="Speaking rate; 1.0 is the voice's own pace.")
    nfe_step: int = Field(32, ge=2, le=128, description="Sampling steps: more is slower and cleaner.")
    cfg_strength: float = Field(2.0, ge=0.0, le=10.0, description="Classifier-free guidance strength.")
    sway_sampling_coef: float = Field(-1.0, ge=-1.0, le=1.0, description="Sway sampling coefficient.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Random seed. Default: derived from id, so reruns reproduce the audio."
    )
    remove_silence: bool = Field(False, description="Cut long silences from the output.")
    cross_fade: float = Field(0.15, ge=0.0, le=1.0, description="Seconds of cross-fade between text chunks.")
    check: bool | None = Field(
        None, description="Listening check: the ASR model transcribes the audio, chunk by chunk, and scores it "
        "against the text (result.json's check). Default: F5B_CHECK, or on when max_wer is given.",
    )
    max_wer: float | None = Field(
        None, ge=0.0, allow_inf_nan=False,
        description="Most word error rate a text chunk may have (character error rate for languages written "
        "without spaces); a chunk over it is synthesized again with the next seed, up to F5B_CHECK_ATTEMPTS takes. "
        "Default: none (the check only measures).",
    )
    on_check_fail: Literal["fail", "keep"] = Field(
        "fail", description="When no take of a chunk is within max_wer: fail the job (check_failed), or keep the "
        "best takes and record check.passed false.",
    )

    @field_validator("sample_rate")
    @classmethod
    def _rate_of_the_format(cls, rate: int | None, info: ValidationInfo) -> int | None:
        if rate is not None and (problem := sample_rate_problem(info.data.get("format", "wav"), rate)):
            raise PydanticCustomError("sample_rate", problem)
        return rate

    @field_validator("bitrate")
    @classmethod
    def _bitrate_of_a_lossy_format(cls, kbps: int | None, info: ValidationInfo) -> int | None:
        if kbps is None or "format" not in info.data or "sample_rate" not in info.data:  # else said already
            return kbps
        rate = info.data.get("sample_rate") or DEFAULT_SAMPLE_RATE
        if problem := bitrate_problem(info.data["format"], kbps, rate):
            raise PydanticCustomError("bitrate", problem)
        return kbps

    @field_validator("true_peak_db")
    @classmethod
    def _ceiling_with_a_target(cls, ceiling: float | None, info: ValidationInfo) -> float | None:
        if ceiling is not None and info.data.get("loudness") is None and "loudness" in info.data:
            raise PydanticCustomError("true_peak_db", "a true-peak ceiling goes with a loudness target: set "
                                                      "\"loudness\" too (a number or ebu-r128, podcast, acx)")
        return ceiling

    @field_validator("subtitles")
    @classmethod
    def _each_subtitle_format_once(cls, formats: list[str]) -> list[str]:
        if len(set(formats)) != len(formats):
            raise PydanticCustomError("subtitles", "each subtitle format at most once")
        return formats

    @cached_property
    def script(self) -> list[Piece]:
        """The text as pieces: which voice speaks what, and the pauses (`processor.script`)."""
        return parse_script(self.text, self.voices)

    def voice_specs(self) -> dict[str, VoiceSpec]:
        """Every voice of the manifest by name, "main" first: what each is prepared from."""
        specs = {MAIN: VoiceSpec(self.voice, self.voice_text, self.voice_language, self.speed, self.remove_silence)}
        for name, entry in (self.voices or {}).items():
            specs[name] = VoiceSpec(
                entry.voice, entry.voice_text, entry.voice_language,
                self.speed if entry.speed is None else entry.speed,
                self.remove_silence if entry.remove_silence is None else entry.remove_silence,
            )
        return specs

    @property
    def job_id(self) -> str:
        assert self.id is not None, "parse_manifest always sets id"
        return self.id

    @property
    def effective_seed(self) -> int:
        return self.seed if self.seed is not None else seed_from_id(self.job_id)


def seed_from_id(job_id: str) -> int:
    """A stable seed per id: a rerun of the same manifest reproduces the same audio."""
    return int.from_bytes(hashlib.sha256(job_id.encode("utf-8")).digest()[:4], "big")


def code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def character_kind(char: str) -> str:
    """Why a character is refused, in words."""
    if unicodedata.category(char) == "Cc":
        return "control character"
    if 0xD800 <= ord(char) <= 0xDFFF:
        return "lone surrogate"
    if 0x202A <= ord(char) <= 0x202E or 0x2066 <= ord(char) <= 0x2069:
        return "bidirectional control character"
    return "Unicode noncharacter"


def printable(text: str, limit: int = 200) -> str:
    """`text` safe to put in a message, a log line or a result: forbidden characters as \\uXXXX, cut at `limit`."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return _FORBIDDEN_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", cut)


def safe_id(name: str) -> str:
    """A valid job id made from an arbitrary file name, for failures before the manifest is read."""
    if _ID_RE.fullmatch(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-")[:100] or "manifest"
    return f"{cleaned}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def parse_manifest(body: bytes, default_id: str) -> Manifest:
    """Validate raw manifest bytes; every failure is a PermanentError with a stable code."""
    checked = check_manifest(body, default_id)
    if checked.manifest is None:
        raise checked.error()
    return checked.manifest


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: its error code, the field it is in ("" for the whole), and what to do."""

    code: str
    field: str
    message: str

    @classmethod
    def of(cls, exc: F5BatchError, field: str = "") -> Problem:
        return cls(exc.code, field, str(exc))

    def __str__(self) -> str:
        """`field: message`, unless the message already starts by naming the field."""
        named = not self.field or self.message.split(" ", 1)[0] == self.field
        return self.message if named else f"{self.field}: {self.message}"


@dataclass(frozen=True)
class CheckedManifest:
    """Every problem of a manifest, in the order the worker meets them: the first one's code is the job's."""

    manifest: Manifest | None
    problems: list[Problem]
    data: dict[str, Any] | None = None  # the JSON object, even when it is not a valid manifest

    def error(self) -> F5BatchError:
        """The one error the worker fails the job with: the first problem's code, with all problems of that code."""
        first = self.problems[0]
        same = [str(p) for p in self.problems if p.code == first.code]
        if len(same) > MAX_REPORTED_PROBLEMS:
            same = [*same[:MAX_REPORTED_PROBLEMS], f"and {len(same) - MAX_REPORTED_PROBLEMS} more problems"]
        return CATALOGUE[first.code]("; ".join(same))


def check_manifest(body: bytes, default_id: str) -> CheckedManifest:
    """All the rules a manifest's bytes must meet, every problem collected (JSON that cannot be read is one)."""
    try:
        data = load_json(body)
    except F5BatchError as exc:
        return CheckedManifest(None, [Problem.of(exc)])
    if not isinstance(data, dict):
        return CheckedManifest(None, [Problem(InvalidManifest.code, "",
                                              f"manifest must be a JSON object, not {_json_type(data)}")])
    problems = [*_field_name_problems(data), *_default_id_problems(data, default_id)]
    named_or_bad = data.get("id") is not None or not _ID_RE.fullmatch(default_id)  # "id": null means the default
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(data if named_or_bad else {**data, "id": default_id})
    except ValidationError as exc:
        said = {p.field for p in problems}
        problems += [p for p in schema_problems(exc) if p.field not in said]
    if isinstance(data.get("text"), str) and not any(p.field == "text" for p in problems):
        table_ok = not any(p.field.split(".")[0] == "voices" for p in problems)  # else which tags it means is unknown
        try:  # before any voice is fetched: a bad tag or break, or zero-width characters alone (seconds of noise)
            parse_script(data["text"], _voice_names(data.get("voices")) if table_ok else None)
        except (InvalidManifest, TextUnusable) as exc:
            problems.append(Problem.of(exc, "text"))
    return CheckedManifest(None if problems else manifest, problems, data)


def _voice_names(voices: Any) -> list[str] | None:
    """The names of a valid voices table; None where there is none (then tags are text, and only breaks are read)."""
    return list(voices) if isinstance(voices, dict) else None


def _field_name_problems(data: dict[str, Any]) -> list[Problem]:
    return [Problem(InvalidManifest.code, printable(key, 100),
                    f"unknown field; its name contains {character_kind(found.group())} {code_point(found.group())}")
            for key in data if (found := _FORBIDDEN_RE.search(key))]


def _default_id_problems(data: dict[str, Any], default_id: str) -> list[Problem]:
    if data.get("id") is not None or _ID_RE.fullmatch(default_id):
        return []
    return [Problem(InvalidManifest.code, "id", f"file name '{printable(default_id)}' is not a valid job id; "
                                                f"set \"id\" (pattern {ID_PATTERN})")]


def load_json(body: bytes) -> Any:
    """Strict JSON in UTF-8 (a leading BOM is tolerated): no NaN or Infinity, no duplicate keys."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest is {len(body)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        text = body.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"manifest is not valid JSON: it is not UTF-8 text ({exc})") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"manifest is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidJson("manifest is not valid JSON: it is nested too deeply") from exc
    except ValueError as exc:  # an integer with more digits than Python converts
        raise InvalidJson(f"manifest is not valid JSON: {printable(str(exc).split(';')[0])}") from exc


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"manifest is not valid JSON: {name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidManifest(f"field '{printable(key, 100)}' appears more than once; give each field once")
            seen.add(key)
    return data


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def schema_problems(exc: ValidationError) -> list[Problem]:
    """One problem per schema violation, naming the field, in words a user can act on."""
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(printable(str(p), 100) for p in err["loc"] if p != "[key]")  # a dict key's own error
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see `f5-batch schema`)"
        else:
            message = printable(err["msg"])
        problems.append(Problem(InvalidManifest.code, where, message))
    return problems


def manifest_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://f5-batch.dev/schema/manifest-v1.json"
    schema["additionalProperties"] = False
    schema["properties"]["voices"]["anyOf"][0]["propertyNames"] = {"pattern": VOICE_NAME_PATTERN,
                                                                     "not": {"const": MAIN}}
    return schema


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=2, ensure_ascii=False) + "\n"
