"""The second hostile corpus: what an attacker or a careless operator puts where the worker looks, as data.

Three batches, each run through the real CLI with `--once`: odd inbox entries (a name too long to claim, a FIFO,
links, a socket, a folder, a 1.5 GiB file, a future date, a dead worker's claim beside a resubmitted manifest),
paths that lead out (voice links out of the inbox, a linked outbox job folder, percent-encoded signatures), and
texts without sentence breaks. `tests/test_inbox_entries.py`, `tests/test_escapes.py` and `tests/test_long_text.py`
check each case one by one; the reliability report
(`scenarios.hostile_world`) runs the same batches and counts what came out.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import soundfile as sf

from processor.storage.entries import NAME_MAX
from processor.storage.local import CLAIMS

from tests.support.manifests import manifest, write_manifest
from tests.support.paths import VOICE

FAST = {"nfe_step": 2}

# --- odd inbox entries -------------------------------------------------------------------------------------

LONG_NAME = "n" * (NAME_MAX - len(".json"))  # the longest name a file system takes: its claim name would not fit
HUGE_BYTES = 3 * 2**29  # 1.5 GiB, sparse: no disk used
UNREADABLE = {"a": "FIFO", "dangling": "symbolic link", "zero": "symbolic link", "linked": "symbolic link",
              "s": "socket"}
# job id -> what its result must say: "succeeded", or the code it fails with
ENTRY_EXPECTED = {"long-name": "succeeded", "future": "succeeded", "job-first": "succeeded",
                  "job-second": "succeeded", "huge": "invalid_manifest",
                  **dict.fromkeys(UNREADABLE, "manifest_unreadable")}


def fast(text: str, **fields: Any) -> dict[str, Any]:
    return manifest(text, nfe_step=2, **fields)


def short_voice_inbox(root: Path) -> Path:
    """`root/inbox` with a 1.5 s cut of the example voice: short prompts keep the batch fast."""
    inbox = root / "inbox"
    (inbox / "voices").mkdir(parents=True)
    samples, rate = sf.read(VOICE, dtype="int16")
    sf.write(inbox / "voices" / "narrator.wav", samples[: int(1.5 * rate)], rate)
    return inbox


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@contextmanager
def odd_entries(root: Path, inbox: Path) -> Iterator[None]:
    """Every odd entry next to good manifests (`long-name`, `future`, `job`), while the socket's listener is open."""
    write_manifest(inbox, LONG_NAME, fast("A long name.", id="long-name"))
    os.mkfifo(inbox / "a.json")
    (inbox / "dangling.json").symlink_to(root / "nowhere.json")
    (inbox / "zero.json").symlink_to("/dev/zero")
    (inbox / "linked.json").symlink_to(write_manifest(root, "outside", fast("Reached through a link.")))
    future = write_manifest(inbox, "future", fast("From the future."))
    later = time.time() + 3600
    os.utime(future, (later, later))
    (inbox / "d.json").mkdir()
    huge = inbox / "huge.json"
    huge.touch()
    os.truncate(huge, HUGE_BYTES)
    dead_claim = inbox / CLAIMS / f"job@{socket.gethostname()}.{dead_pid()}.json"
    write_manifest(inbox / CLAIMS, dead_claim.name.removesuffix(".json"), fast("First.", id="job-first"))
    write_manifest(inbox, "job", fast("Second.", id="job-second"))  # resubmitted while the old claim waited
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(inbox / "s.json"))
        yield


# --- paths that lead out -----------------------------------------------------------------------------------

SIGNATURES = {  # job -> (its voice, the secret it carries, percent-encoded as a signed URL inside a key would be)
    "signed-voice-3d": ("voices/clip.wav%3FX-Amz-Algorithm%3DAWS4-HMAC-SHA256%26X-Amz-Signature%3D"
                        "5ec2e70000aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666777788%26x=1",
                        "5ec2e70000aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666777788"),
    "signed-voice-lowercase": ("voices/clip.wav%3fX-Amz-Credential%3dAKIASECRETCREDENTIAL%2F20261128%26"
                               "X-Amz-Signature%3ddeadbeef00112233445566778899aabbccddeeff",
                               "deadbeef00112233445566778899aabbccddeeff"),
    "signed-voice-double-encoded": ("voices/clip.wav%253FX-Amz-Security-Token%253DFwoGZXIvDOUBLEENCODEDTOKEN"
                                    "%2526X-Amz-Signature%253Dcafef00dcafef00dcafef00d",
                                    "cafef00dcafef00dcafef00d"),
}
SECRETS = [secret for _, secret in SIGNATURES.values()] + ["AKIASECRETCREDENTIAL", "FwoGZXIvDOUBLEENCODEDTOKEN"]
ESCAPE_EXPECTED = {"voice-link-outside": "voice_not_allowed", "voice-through-root-link": "voice_not_allowed",
                   "voice-fifo": "voice_not_found", "good": "succeeded", "good-alias": "succeeded",
                   **dict.fromkeys(SIGNATURES, "voice_not_found")}
LINKED_JOB = "linked-job"  # its outbox folder is a link: no result can be written, only its log line says storage_error


def write_escapes(root: Path) -> tuple[Path, Path]:
    """An inbox and outbox under `root` whose links lead out of them, and the manifests that try them."""
    inbox, outbox, elsewhere = root / "inbox", root / "outbox", root / "elsewhere"
    (inbox / "voices").mkdir(parents=True)
    outbox.mkdir()
    elsewhere.mkdir()
    (inbox / "voices" / "narrator.wav").write_bytes(VOICE.read_bytes())
    (root / "outside.wav").write_bytes(VOICE.read_bytes())  # a real clip: a voice that reached it would succeed
    (inbox / "voices" / "outside-link.wav").symlink_to(root / "outside.wav")
    (inbox / "voices" / "alias.wav").symlink_to("narrator.wav")  # a link that stays inside is fine
    (inbox / "root").symlink_to("/")
    os.mkfifo(inbox / "voices" / "pipe.wav")  # opening it to read would block a careless worker forever
    (outbox / "linked-job").symlink_to(elsewhere)
    jobs = {
        "voice-link-outside": manifest("Hi.", voice="voices/outside-link.wav", **FAST),
        "voice-through-root-link": manifest("Hi.", voice=f"root{root / 'outside.wav'}", **FAST),
        "voice-fifo": manifest("Hi.", voice="voices/pipe.wav", **FAST),
        "linked-job": manifest("Hi.", **FAST),
        "good-alias": manifest("Hi.", voice="voices/alias.wav", **FAST),
        "good": manifest("Hi.", **FAST),
        **{job: manifest("Hi.", voice=voice, **FAST) for job, (voice, _) in SIGNATURES.items()},
    }
    for job, body in jobs.items():
        write_manifest(inbox, job, body)
    return inbox, outbox


# --- texts F5-TTS's chunking leaves too long for the model -------------------------------------------------

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme cluster of 7 code points
WORDS = "the quick brown fox jumps over the lazy dog and keeps on running".split()


def words(count: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(count))


# Each is one "sentence" to F5-TTS's chunking, past the model's limit in the example voice (about 1,110 bytes at
# speed 1, 330 at 0.3): on the code before this change each failed with internal_error (a shape error).
LONG: dict[str, tuple[str, float]] = {
    "no-punctuation": (words(230), 1.0),
    "slow": (words(64), 0.3),
    "chinese-without-spaces": ("我们今天去公园散步然后一起吃午饭" * 24, 1.0),
    "urls": (" ".join(f"https://example.com/a/{i}/page?query=value&x={i}" for i in range(24)), 1.0),
    "emoji": (("😀" + FAMILY + "🇫🇷👍🏽") * 27, 1.0),
    "punctuation": ("...---!!!???" * 96, 1.0),
}
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\ufe0f" * 40
TEXT_EXPECTED = {**dict.fromkeys(LONG, "succeeded"), "invisible": "text_unusable", "plain": "succeeded"}


def write_texts(inbox: Path) -> None:
    """The long texts (without guidance, so that some 90 s of speech each costs seconds), the invisible one (whose
    voice is missing: it must fail before the voice is looked at) and a plain one."""
    for name, (text, speed) in LONG.items():
        write_manifest(inbox, name, manifest(text, speed=speed, nfe_step=2, cfg_strength=0.0))
    write_manifest(inbox, "invisible", manifest(INVISIBLE, nfe_step=2, voice="voices/missing.wav"))
    write_manifest(inbox, "plain", manifest("Hello there. This is a normal text.", nfe_step=2))
