#!/usr/bin/env python3
"""`f5-batch seed`, runnable by path where the package is not installed (same flags, same exit statuses).

    python scripts/seed_volume.py --volume PATH [--model F5TTS_v1_Base] [--from DIR] [--tiny] [--fp16-copy]
    python scripts/seed_volume.py --volume PATH --random F5TTS_v1_Base   # real shapes, random weights, offline
    python scripts/seed_volume.py --volume PATH --asr [--asr-model openai/whisper-small] [--from DIR]

All logic lives in `processor.seeding`; this wrapper only makes the repo importable.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from processor.seeding.cli import main  # noqa: E402  (needs the sys.path entry above)

if __name__ == "__main__":
    raise SystemExit(main())
