"""What an outbox shows: each job's `<job id>/result.json`, in a local folder or an S3 bucket, and object versions.

The one way the tests, the scenarios and the benchmarks read results, so that none of them drifts from the
layout the worker writes (`<outbox>/<job id>/result.json`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT = "result.json"


def read_result(outbox: Path, job: str) -> dict[str, Any]:
    """`<outbox>/<job>/result.json` of a local outbox."""
    data: dict[str, Any] = json.loads((outbox / job / RESULT).read_text())
    return data


def all_results(outbox: Path) -> dict[str, dict[str, Any]]:
    """Every result of a local outbox, by the job id each records."""
    results = (read_result(outbox, path.parent.name) for path in sorted(outbox.glob(f"*/{RESULT}")))
    return {result["id"]: result for result in results}


def read_s3_result(s3: Any, bucket: str, job: str, prefix: str = "") -> dict[str, Any]:
    """`<prefix><job>/result.json` of an S3 outbox (`prefix`: the outbox's key prefix, "" or ending in "/")."""
    return _s3_json(s3, bucket, f"{prefix}{job}/{RESULT}")


def s3_results(s3: Any, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every result under `prefix` in an S3 bucket, by the job id each records."""
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", []) if item["Key"].endswith(f"/{RESULT}")]
    results = (_s3_json(s3, bucket, key) for key in keys)
    return {result["id"]: result for result in results}


def _s3_json(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return data


def object_versions(s3: Any, bucket: str, prefix: str = "") -> dict[str, list[dict[str, Any]]]:
    """Every version of every key under `prefix` (in a versioned bucket): an overwrite shows as a second version."""
    found: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            found.setdefault(version["Key"], []).append(version)
    return found


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception:
        return False
    return True


def results_present(s3: Any, bucket: str, prefix: str, jobs: list[str]) -> Callable[[], bool]:
    """A condition for `wait_until`: each of `jobs` has a result under `prefix` in the bucket."""
    def check() -> bool:
        keys = {k for k in object_versions(s3, bucket, prefix) if k.endswith(f"/{RESULT}")}
        return all(f"{prefix}{job}/{RESULT}" in keys for job in jobs)

    return check
