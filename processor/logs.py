"""Structured logs: one JSON object per line on stdout, and the same lines per job in `log.jsonl`."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("f5batch")

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
        return json.dumps(event, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f"  {extra}" if extra else "")


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


@dataclass
class JobLog:
    """A job's events: logged as they happen, kept for its `log.jsonl`."""

    job: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, stage: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "level": logging.getLevelName(level).lower(), "job": self.job,
                  "stage": stage, "msg": msg, **fields}
        self.events.append(record)
        logger.log(level, msg, extra={"job": self.job, "stage": stage, **fields})

    def jsonl(self) -> bytes:
        return "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in self.events).encode("utf-8")
