"""Command-line flags made from `Settings`: one definition gives each setting its flag, `F5B_*` variable,
default and help.

A flag is the setting's name in kebab case (`lease_s` → `--lease-s`, `F5B_LEASE_S`). Values are left to
pydantic to check, so a bad value is refused the same way from a flag or a variable, and the refusal names
what the user set. A variable with the `F5B_` prefix that names no setting is a typo until proven otherwise.
"""

from __future__ import annotations

import argparse
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from processor.errors import InvalidConfiguration
from processor.settings import Settings

ENV_PREFIX = "F5B_"
# Flags older than this module, kept under their documented names; the kebab-case name works too.
ALIASES = {"exit_when_idle_s": "--exit-when-idle"}


def flag(name: str) -> str:
    """The flag of setting `name`, as documented."""
    return ALIASES.get(name, "--" + name.replace("_", "-"))


def variable(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_setting_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
                      title: str = "settings (each also an F5B_* variable; a flag wins over its variable)") -> None:
    group = parser.add_argument_group(title)
    for name in names or Settings.model_fields:
        field = Settings.model_fields[name]
        flags = [flag(name)]
        if name in ALIASES:
            flags.append("--" + name.replace("_", "-"))
        kind = _base_type(field.annotation)
        # argparse %-formats help: a literal % (as in "60% of") must be doubled
        help_text = f"{field.description} ({variable(name)}; default: {_default_text(name)})".replace("%", "%%")
        if kind is bool:
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) is Literal:
            group.add_argument(*flags, dest=name, choices=typing.get_args(kind), default=None, help=help_text)
        else:
            group.add_argument(*flags, dest=name, metavar=_metavar(name, kind), default=None, help=help_text)


def _base_type(annotation: Any) -> Any:
    """`X | None` → X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _metavar(name: str, kind: Any) -> str:
    if name.endswith("_s"):
        return "SECONDS"
    if name.endswith("_bytes"):
        return "BYTES"
    return {int: "N", float: "NUMBER", Path: "PATH"}.get(kind, name.upper())


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return str(field.default_factory())  # type: ignore[call-arg]
    return "none" if field.default is None else str(field.default)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings set by flags on this command line."""
    return {name: value for name in Settings.model_fields if (value := getattr(args, name, None)) is not None}


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Flags over `F5B_*` variables over defaults; InvalidConfiguration naming the flag or variable that is wrong."""
    flags = given(args)
    try:
        return Settings(**flags)
    except ValidationError as exc:
        raise InvalidConfiguration(*_refusal(exc, flags, environ)) from None


def _refusal(exc: ValidationError, flags: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, str]:
    problems, fixes = [], []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if name in flags:
            source, value = flag(name), flags[name]
        else:
            source = variable(name)
            value = next((v for k, v in environ.items() if k.upper() == source), error.get("input"))
        problems.append(f"{source} {str(value)!r}: {error['msg']}")
        field = Settings.model_fields.get(name)
        meaning = f" ({field.description.rstrip('.')})" if field is not None and field.description else ""
        fixes.append(f"set {source} to a valid value{meaning}")
    return "; ".join(problems), "; ".join(fixes)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, the closest real one or "") for each `F5B_*` variable that names no setting."""
    known = [variable(name) for name in Settings.model_fields]
    unknown = sorted(key for key in environ if key.upper().startswith(ENV_PREFIX) and key.upper() not in known)
    return [(key, next(iter(difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)), "")) for key in unknown]


def check_variables(environ: Mapping[str, str]) -> None:
    """InvalidConfiguration for a mistyped `F5B_*` variable: a worker started without the setting its operator
    believes set fails later and quietly (a metrics port never opened, a lease too short)."""
    unknown = unknown_variables(environ)
    if not unknown:
        return
    said = "; ".join(f"{key} is not a setting" + (f" (did you mean {close}?)" if close else "")
                     for key, close in unknown)
    fixes = "; ".join(f"rename {key} to {close}" if close else f"unset {key}" for key, close in unknown)
    raise InvalidConfiguration(said, f"{fixes} (the settings are in the README's configuration table and --help)")
