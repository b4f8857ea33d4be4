"""What the benchmarks share: the machine line, job texts and Markdown tables.

Every benchmark prints its table last, headed by the date and the machine, so
the output can be pasted into the README as it is. The example voice, the loopback servers and the
other helpers they share with the test suite come from `tests.support`, which is why they run as modules
from the repository root (`python -m bench.pipeline`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

from tests.support.manifests import manifest

# Short, varied job texts: a realistic spread of lengths, one sentence to a few.
TEXTS = (
    "Your order has shipped and will arrive on Tuesday.",
    "Welcome back. You have three new messages.",
    "The meeting moved to four o'clock, in the small room on the second floor.",
    "Thank you for calling. Please hold while we connect you.",
    "Chapter one. It was a cold morning, and the harbour was quiet.",
    "Press one for sales, two for support, or stay on the line.",
    "The next train to the airport leaves from platform six in ten minutes.",
    "Remember to drink water and take a short walk every hour.",
)


def job_text(i: int) -> str:
    return TEXTS[i % len(TEXTS)]


def manifests(count: int, steps: int) -> list[dict[str, Any]]:
    """`count` jobs in the example voice, each with its own text and seed."""
    return [manifest(job_text(i), nfe_step=steps, seed=i) for i in range(count)]


def machine() -> str:
    """One line that says where the numbers come from."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    accel = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{time.strftime('%Y-%m-%d')}, {cpu}, {len(os.sched_getaffinity(0))} CPUs, {accel}, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def load_average() -> str:
    """What `uptime` says of the machine's load: CPU time is shared on the development machines."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

