"""Structured logs: one JSON object per line on stdout, and the same lines per job in `log.jsonl`."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("f5batch")

# Query parameters of presigned URLs and signed requests that grant access on their own. A URL inside an object
# key or a query value arrives percent-encoded, once or more: `=` as %3D, %253D, …, and `&` likewise.
_EQUALS, _AMPERSAND = r"(?:=|%(?:25)*3D)", r"%(?:25)*26"
_SIGNED_PARAMS = re.compile(
    rf"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId){_EQUALS})"
    rf"(?:(?!{_AMPERSAND})[^&\s\"'])+",
    re.IGNORECASE,
)
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
REDACTED = "[REDACTED]"


@functools.cache
def _secrets() -> tuple[str, ...]:
    return tuple(v for name in _SECRET_VARIABLES if len(v := os.environ.get(name, "")) >= 8)


def redact(text: str) -> str:
    """Remove credentials and presigned-URL signatures from anything that is logged or written to an outbox."""
    for secret in _secrets():
        text = text.replace(secret, REDACTED)
    return _SIGNED_PARAMS.sub(rf"\1{REDACTED}", text)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        event.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(event, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f"  {extra}" if extra else "")
        return redact(line)


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


@dataclass
class JobLog:
    """A job's events: logged as they happen, kept for its `log.jsonl`.

    Every line names the job by one id: the manifest's id once it is read (until then, or when it cannot be, the
    lease's name, which is also the result's id then), and carries `ids` (the queue message's id) from claim to result.
    """

    job: str
    ids: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, stage: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
        named = {"job": self.job, **self.ids}
        record = {"ts": round(time.time(), 3), "level": logging.getLevelName(level).lower(), **named,
                  "stage": stage, "msg": msg, **fields}
        self.events.append(record)
        logger.log(level, msg, extra={**named, "stage": stage, **fields})

    def jsonl(self) -> bytes:
        lines = "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in self.events)
        return redact(lines).encode("utf-8")
