"""Operations: one real worker's /metrics, read by prometheus_client's own parser, before and after two jobs; the
Grafana dashboard queries only metrics it serves; idle pods exit."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from processor import __version__
from processor.metrics import FAILURE_CODES, STAGES, STATUSES
from processor.outcomes import Outcome
from processor.storage.volume import Volume

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.paths import REPO
from tests.support.results import all_results
from tests.support.waiting import wait_until
from tests.support.workers import local_worker_args, run_cli, worker_processes

DASHBOARD = REPO / "docs" / "grafana-dashboard.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: str


def request(url: str, method: str = "GET") -> Response:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as response:
            return Response(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers), exc.read().decode())
    except OSError:  # not listening yet, or already gone
        return Response(0, {}, "")


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float:
    found = [s for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return float(found[0].value)


@dataclass(frozen=True)
class Scrapes:
    """What one worker served: before any manifest was in its inbox, and after one succeeded and one failed job."""

    before: str
    heads: dict[str, Response]
    gets: dict[str, Response]
    after: str
    healthz: Response
    results: dict[str, dict[str, Any]]
    log: list[dict[str, Any]]


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Scrapes:
    root = tmp_path_factory.mktemp("metrics")
    inbox = inbox_with_voice(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = local_worker_args(root, tiny_volume, "--device", "cpu", "--metrics-port", str(port),
                             "--metrics-bind", "127.0.0.1")[1:]
    log = root / "logs" / "worker-0.log"
    with worker_processes(1, args, env=dict(os.environ), logs=root / "logs"):
        assert wait_until(lambda: request(f"{url}/metrics").status == 200, 120), log.read_text()[-3000:]
        before = request(f"{url}/metrics").body
        heads = {path: request(f"{url}{path}", "HEAD") for path in ("/metrics", "/healthz")}
        gets = {path: request(f"{url}{path}") for path in ("/metrics", "/healthz")}
        write_manifest(inbox, "good", manifest("Hi there.", nfe_step=2))
        write_manifest(inbox, "bad-voice", manifest("Hi there.", voice="voices/missing.wav"))

        def two_jobs_ended() -> bool:
            text = request(f"{url}/metrics").body
            return bool(text) and sum(sample(text, "f5batch_jobs_total", status=s) for s in STATUSES) == 2

        assert wait_until(two_jobs_ended, 120, interval=0.2), log.read_text()[-3000:]
        after = request(f"{url}/metrics").body
        healthz = request(f"{url}/healthz")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return Scrapes(before, heads, gets, after, healthz, all_results(root / "outbox"), lines)


def test_a_ready_line_names_what_the_worker_waits_on(scrapes: Scrapes) -> None:
    [ready] = [line for line in scrapes.log if line.get("stage") == "ready"]
    assert ready["msg"].startswith("ready: taking jobs from inbox ")
    metrics_url = ready["metrics"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", metrics_url) and metrics_url in ready["msg"]
    assert (ready["model"], ready["device"]) == ("tiny", "cpu") and ready["outbox"] in ready["msg"]
    first_job = next(i for i, line in enumerate(scrapes.log) if line.get("job"))
    assert scrapes.log.index(ready) < first_job, "ready comes before the first job"


def test_metrics_parse_with_prometheus_client_and_stage_times_are_histograms(scrapes: Scrapes) -> None:
    found = families(scrapes.after)
    assert found["f5batch_stage_seconds"].type == "histogram"
    buckets = [s for s in found["f5batch_stage_seconds"].samples
               if s.name == "f5batch_stage_seconds_bucket" and s.labels["stage"] == "synth"]
    bounds = [float(s.labels["le"]) for s in buckets]
    assert bounds == sorted(bounds) and bounds[0] <= 0.01 and bounds[-2] >= 1800 and bounds[-1] == float("inf")
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and counts[-1] == 1, "cumulative buckets; the one synthesis in +Inf"
    assert found["process_resident_memory_bytes"].samples[0].value > 0, "the process's own metrics"
    assert "python_gc_objects_collected" in found and "python_info" in found


def test_every_label_is_there_at_zero_before_the_first_job(scrapes: Scrapes) -> None:
    text = scrapes.before
    assert all(sample(text, "f5batch_jobs_total", status=s) == 0 for s in STATUSES)
    assert all(sample(text, "f5batch_job_failures_total", code=c) == 0 for c in FAILURE_CODES)
    assert all(sample(text, "f5batch_stage_seconds_count", stage=s) == 0 for s in STAGES)
    assert {"voice_not_found", "invalid_manifest", "out_of_memory", "internal_error"} <= set(FAILURE_CODES)
    assert "outbox_unwritable" not in FAILURE_CODES, "a log-only code is not a job's failure"
    assert families(text)["f5batch_queue_depth_messages"].samples == [], "a folder inbox has no queue depth"
    assert families(text)["f5batch_accelerator_memory_bytes"].samples == [], "the family is there on a CPU too"


def test_counts_after_a_success_and_a_failure_match_the_outbox(scrapes: Scrapes) -> None:
    text, results = scrapes.after, scrapes.results
    assert {r["status"] for r in results.values()} == {"succeeded", "failed"}
    good, bad = results["good"], results["bad-voice"]
    assert bad["error"]["code"] == "voice_not_found"
    assert sample(text, "f5batch_jobs_total", status="succeeded") == 1
    assert sample(text, "f5batch_jobs_total", status="failed") == 1
    assert sample(text, "f5batch_job_failures_total", code="voice_not_found") == 1
    assert sum(sample(text, "f5batch_job_failures_total", code=c) for c in FAILURE_CODES) == 1
    assert abs(sample(text, "f5batch_audio_seconds_total") - good["duration_s"]) < 1e-3
    assert abs(sample(text, "f5batch_synthesis_seconds_total") - good["timings"]["synth"]) < 0.01
    assert sample(text, "f5batch_stage_seconds_count", stage="synth") == 1
    assert abs(sample(text, "f5batch_stage_seconds_sum", stage="synth") - good["timings"]["synth"]) < 0.01
    assert sample(text, "f5batch_stage_seconds_count", stage="fetch") >= 1
    assert sample(text, "f5batch_jobs_in_flight") == 0
    assert scrapes.healthz.status == 200 and json.loads(scrapes.healthz.body)["healthy"] is True


def test_head_answers_like_get_without_a_body(scrapes: Scrapes) -> None:
    for path, head in scrapes.heads.items():
        get = scrapes.gets[path]
        assert (head.status, head.body) == (200, ""), path
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path
        assert int(head.headers["Content-Length"]) > 0, path
    assert scrapes.gets["/metrics"].headers["Content-Type"] == CONTENT_TYPE_LATEST


def test_build_info_names_the_version_model_and_device(scrapes: Scrapes) -> None:
    assert sample(scrapes.before, "f5batch_build_info", version=__version__, model="tiny", device="cpu") == 1


def test_every_status_an_outcome_counts_is_there_from_the_start() -> None:
    """The outcomes that end a lease (`again_after_s` not overridden) count their `metric`."""
    def subclasses(cls: type[Outcome]) -> list[type[Outcome]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    ending = {c.metric for c in subclasses(Outcome) if c.again_after_s is Outcome.again_after_s}
    assert ending == set(STATUSES)


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
                "unless", "inf", "nan"}


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: not labels, functions, keywords, durations or numbers."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def test_queried_metrics_reads_promql() -> None:
    assert queried_metrics('histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{job=~"$job"}[5m])))') == \
        {"a_bucket"}
    assert queried_metrics("sum(rate(x_total[1m])) / sum(rate(y_total[1m])) > 0") == {"x_total", "y_total"}


def served(name: str, found: dict[str, Any]) -> bool:
    """Whether a queried series name exists: a gauge's own name, or a counter's/histogram's suffixed series."""
    if name in found and found[name].type in ("gauge", "untyped", "unknown", "info"):
        return True
    suffixes = {"_total": ("counter",), "_created": ("counter", "histogram", "summary"),
                "_bucket": ("histogram",), "_sum": ("histogram", "summary"), "_count": ("histogram", "summary")}
    for suffix, kinds in suffixes.items():
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and base in found and found[base].type in kinds:
            return True
    return False


def test_the_grafana_dashboard_queries_only_metrics_a_worker_serves(scrapes: Scrapes) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])
    exprs += [v["definition"].removeprefix("label_values(").split(",")[0] for v in dashboard["templating"]["list"]]
    queried = set().union(*(queried_metrics(e) for e in exprs))
    assert {"f5batch_stage_seconds_bucket", "f5batch_queue_depth_messages", "f5batch_job_failures_total",
            "f5batch_accelerator_memory_bytes", "f5batch_synthesis_seconds_total"} <= queried
    found = families(scrapes.before)
    assert [n for n in sorted(queried) if not served(n, found)] == []
    assert not served("f5batch_jobs", found) and not served("f5batch_build_info_total", found), "suffixes matter"


def test_the_readme_and_docs_name_the_metrics_the_worker_serves(scrapes: Scrapes) -> None:
    found = families(scrapes.before)
    for doc in (REPO / "README.md", REPO / "docs" / "deploy-runpod.md"):
        named = set(re.findall(r"`(f5batch_\w+)", doc.read_text()))
        assert named and [n for n in sorted(named) if n not in found and not served(n, found)] == [], doc
    ours = {n for n, f in found.items() if n.startswith("f5batch_") and not n.endswith("_created")}
    readme = (REPO / "README.md").read_text()
    assert [n for n in sorted(ours) if n not in readme] == [], "README's metrics section lists every family"


def test_an_idle_worker_exits_zero_after_the_limit(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox_with_voice(tmp_path)
    env = {"F5B_VOLUME": str(tiny_volume.root), "F5B_PROCESSING_DIR": str(tmp_path / "processing")}
    started = time.monotonic()
    out = run_cli("run", "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "outbox"),
                  "--model", "tiny", "--device", "cpu", "--exit-when-idle", "2", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"idle for 2 s: 0 succeeded, 0 failed, 0 left", out.stdout + out.stderr)
    assert time.monotonic() - started < 60
