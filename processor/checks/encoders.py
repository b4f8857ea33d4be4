"""The encoders the outbox's formats need: found at start-up, not by a job after its synthesis."""

from __future__ import annotations

import shutil
import subprocess

from processor.checks import Context, Verdict, failed, passed
from processor.encoding import FFMPEG, REQUIRED_ENCODERS

INSTALL = ("install ffmpeg with its libopus, libmp3lame and libvorbis encoders (Debian and Ubuntu's ffmpeg package "
           "has them: apt-get install ffmpeg; scripts/setup.sh and the image install it), first on PATH")


def ffmpeg_encoders(ctx: Context) -> Verdict:
    """ffmpeg on the worker's PATH, and every encoder opus, m4a, and mp3 or ogg with a bitrate go through."""
    found = shutil.which(FFMPEG, path=ctx.environ.get("PATH"))
    if found is None:
        return failed("ffmpeg is not on PATH: opus and m4a, and mp3 or ogg with a bitrate, cannot be written", INSTALL)
    try:
        listing = subprocess.run([found, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return failed(f"{found} -encoders did not answer: {exc}", INSTALL)
    # Each encoder is a line of six capability letters (A: audio) and its name, after a legend ending in "------".
    names = {parts[1] for line in listing.stdout.splitlines()
             if len(parts := line.split()) >= 2 and len(parts[0]) == 6 and parts[0].startswith("A")}
    missing = [name for name in REQUIRED_ENCODERS if name not in names]
    if missing:
        return failed(f"{found} has no {', '.join(missing)} encoder: those formats cannot be written", INSTALL)
    return passed(f"{found}: {', '.join(REQUIRED_ENCODERS)}")
