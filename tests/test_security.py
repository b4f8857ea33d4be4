"""Secrets never reach a log line or a result; outputs stay under the outbox."""

from __future__ import annotations

import shutil
from pathlib import Path

from processor.storage.volume import Volume

from tests.support.manifests import manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.workers import run_cli

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
PRESIGNED = ("https://bucket.s3.amazonaws.com/voice.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAEXAMPLE%2F20261128%2Fus-east-1%2Fs3%2Faws4_request"
             "&X-Amz-Signature=0123456789abcdef0123456789abcdef&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE")


def test_presigned_urls_and_secret_keys_are_redacted_everywhere(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "voices").mkdir(parents=True)
    shutil.copy(VOICE, inbox / "voices" / "narrator.wav")
    write_manifest(inbox, "presigned", manifest(voice=PRESIGNED))
    write_manifest(inbox, "secret-in-text", manifest(f"Please never say {SECRET} aloud.", nfe_step=2))
    out = run_cli("run", "--once", "--inbox", str(inbox), "--outbox", str(tmp_path / "outbox"),
                  "--volume", str(tiny_volume.root), "--model", "tiny",
                  "--processing-dir", str(tmp_path / "processing"), env={"AWS_SECRET_ACCESS_KEY": SECRET})
    assert out.returncode == 0, out.stdout[-2000:]
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "outbox").rglob("*.json*"))
    for text in (out.stdout + out.stderr, written):
        assert "0123456789abcdef0123456789abcdef" not in text
        assert "FwoGZXIvYXdzEXAMPLE" not in text and "AKIAEXAMPLE" not in text
        assert SECRET not in text
    assert "[REDACTED]" in written, "the redaction is visible, not a silent drop"
    assert "voice_not_allowed" in written
