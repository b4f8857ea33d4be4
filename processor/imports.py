"""A lean import path: F5-TTS's model code and Vocos without what the worker never runs.

`import f5_tts.model` runs the package's `__init__`, which imports the trainer
(accelerate, wandb, datasets) and every backbone; its modules import librosa,
pypinyin and einx at import time for paths the worker never takes. Together that
is most of F5-TTS's import time. `lean_imports()` loads only the modules the
worker uses, and defers the rest until first use, so behaviour is unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

# Names that F5-TTS's model modules and Vocos import at import time but use only on paths the
# worker never takes. Stand-ins take their place while those modules are imported, and import
# the real thing when first used, so behaviour is unchanged and the cost is paid only if needed.
_DEFERRED_NAMES: dict[str, tuple[str, ...]] = {
    "librosa.filters": ("mel",),  # f5_tts.model.modules: the BigVGAN mel filterbank (~1 s: scipy, numba)
    "scipy.integrate": ("solve_ivp",),  # torchdiffeq: only its "scipy_solver" method
    "pypinyin": ("Style", "lazy_pinyin"),  # f5_tts.model.utils: Chinese characters only (~0.5 s)
    "huggingface_hub": ("hf_hub_download",),  # vocos.pretrained: Vocos.from_pretrained (hub downloads)
}
# Imported whole by x_transformers (`import einx`) for layers F5-TTS does not use; einx pulls in
# sympy and torch._dynamo (~1.5 s). A stand-in imports it on first attribute access.
_DEFERRED_MODULES = ("einx",)
WORKER_MODULES = (
    "f5_tts.model.cfm", "f5_tts.model.backbones.dit", "f5_tts.model.backbones.unett", "f5_tts.model.utils", "vocos"
)


def lean_imports() -> None:
    """Import F5-TTS's model code and Vocos without what the worker never runs.

    `import f5_tts.model.cfm` first runs `f5_tts/model/__init__.py`, which imports the
    Trainer (accelerate, wandb, datasets) and every backbone: seconds of startup for
    nothing. The package is registered with its real path and spec, and its `__init__`
    runs on first attribute access (PEP 562), so `from f5_tts.model import CFM`
    (F5-TTS's own inference code, the tests) still works in the same process.
    """
    if all(name in sys.modules for name in WORKER_MODULES):
        return
    _defer_package_init("f5_tts.model")
    for name in _DEFERRED_MODULES:
        _defer_module(name)
    with _stand_ins(_DEFERRED_NAMES):
        for name in WORKER_MODULES:
            importlib.import_module(name)


def _defer_package_init(name: str) -> None:
    """Register package `name` so its submodules import without running its `__init__` until it is used."""
    spec = importlib.util.find_spec(name)
    if name in sys.modules or spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()

    def run_init(attr: str) -> Any:
        if _is_probe(attr):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        with lock:
            if package.__dict__.get("__getattr__") is run_init:
                del package.__dict__["__getattr__"]
                try:
                    loader.exec_module(package)
                except BaseException:
                    package.__dict__["__getattr__"] = run_init
                    raise
        return getattr(package, attr)

    package.__dict__["__getattr__"] = run_init
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, package)


def _is_probe(attr: str) -> bool:
    """Dunder lookups that tools make on every module in sys.modules (inspect, pytest, pickle) are not uses."""
    return attr.startswith("__") and attr.endswith("__") and attr not in ("__path__", "__all__")


class _ImportOnFirstUse(types.ModuleType):
    """Stands in for a module until something reads from it; then imports the real one and forwards."""

    def __getattr__(self, attr: str) -> Any:
        if _is_probe(attr):
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _defer_module(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _ImportOnFirstUse(name)
    stand_in.__spec__ = spec  # find_spec() callers must not see None
    stand_in.__file__ = spec.origin  # inspect.getmodule() reads every module's __file__
    sys.modules[name] = stand_in


class _Deferred:
    """A name from a module, imported when first called or read from."""

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def _target(self) -> Any:
        target = getattr(importlib.import_module(self._module), self._name)
        if target is self:
            raise ImportError(f"{self._module}.{self._name} was used while F5-TTS was being imported")
        return target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # our own fields before __init__ ran (copy, pickle), and probes: not uses
            raise AttributeError(attr)
        return getattr(self._target(), attr)


@contextlib.contextmanager
def _stand_ins(names: dict[str, tuple[str, ...]]) -> Iterator[None]:
    """Modules offering deferred `names`, in sys.modules only for the duration (modules already imported are used)."""
    added = [module for module in names if module not in sys.modules]
    for module in added:
        stand_in = types.ModuleType(module, "stand-in while F5-TTS is imported: see processor.model.lean_imports")
        for name in names[module]:
            setattr(stand_in, name, _Deferred(module, name))
        sys.modules[module] = stand_in
    try:
        yield
    finally:
        for module in added:
            del sys.modules[module]


