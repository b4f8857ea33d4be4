"""The interpreter, the pinned packages, the accelerator, and where caches would go."""

from __future__ import annotations

import socket
import sys
from importlib import metadata
from pathlib import Path

from processor.checks import Context, Verdict, failed, passed, warned

MIN_PYTHON = (3, 10)
DISTRIBUTION = "f5-batch"
# Pinned in pyproject.toml because the audio must equal F5-TTS's own: the pins are read back from the
# installed f5-batch's metadata, so this list names them and never repeats their versions.
PINNED = ("torch", "torchaudio", "torchcodec", "f5-tts")
REINSTALL = "pip install -e . (or rebuild the image), which installs the pinned versions"
# Set by the worker itself (Volume.apply_cache_environment): always on the volume at run time.
WORKER_CACHES = ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME")
# Every cache location the image or pod may set (HUGGINGFACE_HUB_CACHE: huggingface_hub's older name).
CACHE_VARIABLES = (*WORKER_CACHES, "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE")

def python_version(ctx: Context) -> Verdict:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        return failed(f"Python {version}; f5-batch needs {wanted} or newer", f"use a Python {wanted}+ image")
    return passed(f"Python {version} ({sys.executable})")


def pinned_versions() -> dict[str, str]:
    """{package: specifier} for PINNED, from the installed f5-batch's requirements."""
    from packaging.requirements import Requirement

    requirements = [Requirement(line) for line in metadata.requires(DISTRIBUTION) or []]
    return {req.name: str(req.specifier) for req in requirements if req.name in PINNED}


def packages(ctx: Context) -> Verdict:
    from packaging.specifiers import SpecifierSet

    try:
        pins = pinned_versions()
    except metadata.PackageNotFoundError:
        return warned(f"{DISTRIBUTION} is not installed as a package: its pins cannot be read", REINSTALL)
    found, missing, off = [], [], []
    for name, spec in pins.items():
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        found.append(f"{name} {version}")
        if not SpecifierSet(spec).contains(version, prereleases=True):
            off.append(f"{name} {version} (pinned {spec})")
    if missing:
        return failed(f"not installed: {', '.join(missing)}", REINSTALL)
    if off:
        return warned(f"not the pinned versions: {'; '.join(off)}: audio may differ from F5-TTS's", REINSTALL)
    return passed(", ".join(found))


def accelerator(ctx: Context) -> Verdict:
    import torch

    requested = ctx.settings.device
    if requested == "cpu":
        return passed("CPU requested (F5B_DEVICE=cpu)")
    if requested != "auto" and not requested.startswith("cuda"):
        return failed(f"unknown device {requested!r}", "set F5B_DEVICE (or --device) to auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        if requested == "auto":
            return warned("no CUDA device visible: the worker runs on the CPU, many times slower",
                          "on a GPU pod: check nvidia-smi, and that the image's torch is a CUDA build")
        return failed(f"F5B_DEVICE={requested} but no CUDA device is visible",
                      "run on a GPU pod (check nvidia-smi), or set F5B_DEVICE=auto to fall back to the CPU")
    return _cuda_device(requested)


def _cuda_device(requested: str) -> Verdict:
    import torch

    index = int(requested.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        return failed(f"F5B_DEVICE={requested} but only {count} CUDA device(s) are visible",
                      f"set F5B_DEVICE to cuda:0 … cuda:{count - 1}, or auto")
    free, total = torch.cuda.mem_get_info(index)
    return passed(f"cuda:{index} {torch.cuda.get_device_name(index)}, "
                  f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")


def caches(ctx: Context) -> Verdict:
    """Every cache must be on the volume: the container disk is small and lost with the pod.

    The worker points its own caches at the volume, so those are checked as it will set them; a variable the
    image or pod sets elsewhere is still a mistake (a Dockerfile ENV line): a shell, the seed script's
    neighbours or any other tool in the pod would write there.
    """
    volume = ctx.volume.root.resolve()
    worker = ctx.volume.cache_environment()
    wrong = [f"{name}={worker[name]}" for name in WORKER_CACHES if not _under(worker[name], volume)]
    wrong += [f"{name}={ctx.environ[name]}" for name in CACHE_VARIABLES
              if ctx.environ.get(name) and not _under(ctx.environ[name], volume)]
    if wrong:
        return failed(f"not on the volume {volume}: {', '.join(wrong)}",
                      f"remove these from the image or pod environment (Dockerfile ENV, pod template), or point "
                      f"them under {volume}/cache; a symlinked {volume}/cache must not lead off the volume")
    unset = [name for name in CACHE_VARIABLES[len(WORKER_CACHES):] if not ctx.environ.get(name)]
    return passed(f"{', '.join(WORKER_CACHES)} under {volume / 'cache'}"
                  + (f"; {', '.join(unset)} unset" if unset else ""))

def _under(value: str, root: Path) -> bool:
    return Path(value).expanduser().resolve().is_relative_to(root)


def metrics_port(ctx: Context) -> Verdict:
    """Found before the model loads (a minute on a cold volume), not after it as a traceback."""
    port = ctx.settings.metrics_port
    if not port:
        return passed("no metrics port (F5B_METRICS_PORT): /healthz and /metrics are off")
    host = metrics_host(ctx)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the status server binds
            probe.bind((host, port))
    except OSError as exc:
        return failed(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                      f"stop what holds port {port} (ss -ltnp 'sport = :{port}' shows it), or set --metrics-port "
                      f"(F5B_METRICS_PORT) to a free port")
    return passed(f"{host}:{port} is free")


def metrics_host(ctx: Context) -> str:
    from processor.health import metrics_address

    return metrics_address(ctx.settings.metrics_bind)
