"""A fault-injecting HTTP/1.1 reverse proxy for loopback tests, between boto3 (or a child worker) and moto.

moto answers every request promptly and correctly; a real network and real S3/SQS do not. This proxy sits in
front of the moto server and, per request and with a seeded probability, produces the failures a worker meets in
production, so that its retry, idempotency and lease logic can be tested without AWS:

    reset_before  RST the client without forwarding: the server never saw the request.
    reset_after   forward (the change HAPPENS upstream), then RST the client with no response: the client cannot
                  tell that it succeeded. The hard case for conditional writes and SQS deletes.
    stall         read the request, send nothing for `stall_s` (longer than the client's read timeout), close.
    slow          forward, and deliver the response `slow_s` late.
    http500       answer 500 without forwarding: InternalError (S3, XML) / InternalFailure (SQS, JSON).
    http503       answer 503 without forwarding: SlowDown (S3, XML) / ServiceUnavailable (SQS, JSON).
    http403       answer 403 without forwarding: AccessDenied, a refusal for good (not in ALL_KINDS: not a fault a
                  network makes, but a policy that grants some keys and not others).
                  Error bodies have the real services' shapes, so botocore parses the same codes as against AWS.

Usage::

    with FaultProxy(moto_endpoint.url, rate=0.0, seed=1) as proxy:
        s3 = Endpoint(url=proxy.url).client("s3")
        ...                      # set up buckets with no faults
        proxy.set_rate(0.2)      # then let a fifth of the requests fail
        ...
        assert proxy.stats["faults"] > 0

Design: one daemon thread per client connection (keep-alive: requests are read in a loop until the client
closes), one persistent upstream `http.client.HTTPConnection` per client connection. Request bodies are
forwarded byte for byte (chunked framing and trailers included) with the original headers, Host included, so a
SigV4 signature stays valid. Only 127.0.0.1 is ever bound. The fault is decided once the whole request has been
read (the proxy answers ``Expect: 100-continue`` itself), so every kind sees the complete body. The sequence is
deterministic for a seed: per eligible request, in arrival order, one ``random()`` and, when it falls below the
rate, one ``choice(kinds)`` from a single ``random.Random(seed)``.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

__all__ = [
    "ALL_KINDS",
    "FaultProxy",
    "Request",
    "Stats",
    "is_s3",
    "is_sqs",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
ALL_KINDS: tuple[str, ...] = ("reset_before", "reset_after", "stall", "slow", "http500", "http503")
KINDS: tuple[str, ...] = (*ALL_KINDS, "http403")
#: hop-by-hop headers: they describe one connection, so they are not forwarded (RFC 9110 7.6.1). `Expect` is
#: answered by the proxy itself (it sends 100 Continue) and is outside the SigV4 signature, like the others.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "upgrade", "expect"})
MAX_LINE = 65536
MAX_HEADERS = 200
HISTORY_LEN = 10000


class BadRequest(Exception):
    """The client sent something that is not HTTP/1.x; the proxy answers 400 and closes."""


@dataclass(frozen=True)
class Request:
    """One parsed client request, as the `only` predicate and the fault logic see it.

    `body` is the raw bytes as received: for ``Transfer-Encoding: chunked`` it still has the chunk framing and
    trailers, so it can be re-sent unchanged with the same headers.
    """

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of a header, case-insensitively (HTTP header names are case-insensitive)."""
        lname = name.lower()
        return next((value for key, value in self.headers if key.lower() == lname), default)

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to stay open after the response (HTTP/1.1 default)."""
        tokens = {t.strip().lower() for t in (self.header("Connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def is_sqs(req: Request) -> bool:
    """An SQS request: AWS JSON 1.0 (``X-Amz-Target: AmazonSQS.<Op>``, botocore >= 1.34) or the older query
    protocol (a form-encoded POST with ``Action=``), which S3 never sends."""
    if (req.header("X-Amz-Target") or "").startswith("AmazonSQS."):
        return True
    content_type = (req.header("Content-Type") or "").lower()
    return content_type.startswith("application/x-www-form-urlencoded") and b"Action=" in req.body


def is_s3(req: Request) -> bool:
    """Everything that is not SQS: the moto endpoint serves only S3 and SQS to this project."""
    return not is_sqs(req) and req.header("X-Amz-Target") is None


class Stats:
    """A thread-safe Counter of what the proxy did.

    Keys: ``connections``, ``requests`` (seen), ``forwarded`` (sent upstream and answered), ``faults`` (all
    kinds), one key per fault kind (e.g. ``reset_after``), ``upstream_errors`` (upstream unreachable: 502).
    Missing keys read as 0, as with `collections.Counter`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    def snapshot(self) -> Counter[str]:
        """A copy, consistent at one instant (for asserting several counts together)."""
        with self._lock:
            return Counter(self._counts)

    def faults_by_kind(self) -> dict[str, int]:
        """Injected faults per kind, kinds never injected left out."""
        snap = self.snapshot()
        return {kind: snap[kind] for kind in KINDS if snap[kind]}

    def __repr__(self) -> str:
        return f"Stats({dict(self.snapshot())})"


@dataclass
class Reply:
    """A response to send to the client: either relayed from upstream or made up by a fault."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False


# --------------------------------------------------------------------------------------------- HTTP parsing


def _readline(rfile: BinaryIO) -> bytes:
    """One CRLF-terminated line; a line longer than MAX_LINE is an attack or a bug, not HTTP from boto3."""
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadRequest("line too long")
    return line


def _read_headers(rfile: BinaryIO) -> list[tuple[str, str]]:
    """Header lines up to the blank line, names and values as latin-1 text (what HTTP allows on the wire)."""
    headers: list[tuple[str, str]] = []
    while True:
        line = _readline(rfile)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise BadRequest("connection closed inside the headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or len(headers) >= MAX_HEADERS:
            raise BadRequest(f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))


def _read_exact(rfile: BinaryIO, size: int) -> bytes:
    """Exactly `size` bytes, or BadRequest: a short body means the client went away mid-request."""
    data = rfile.read(size)
    if len(data) != size:
        raise BadRequest(f"body truncated at {len(data)} of {size} bytes")
    return data


def _read_chunked(rfile: BinaryIO) -> bytes:
    """A chunked body, raw: size lines, data, the last chunk and the trailers, byte for byte as received.

    Kept raw because it is forwarded with ``Transfer-Encoding: chunked`` unchanged (aws-chunked uploads sign each
    chunk and put checksums in trailers; re-framing would break them).
    """
    parts: list[bytes] = []
    while True:
        size_line = _readline(rfile)
        parts.append(size_line)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadRequest(f"bad chunk size line {size_line[:80]!r}") from exc
        if size == 0:
            break
        parts.append(_read_exact(rfile, size + 2))
    while True:  # trailers, then the blank line that ends the body
        line = _readline(rfile)
        if not line:
            raise BadRequest("connection closed inside the trailers")
        parts.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)


def _read_body(rfile: BinaryIO, headers: list[tuple[str, str]]) -> bytes:
    """The request body by Transfer-Encoding: chunked (which wins, RFC 9112 6.3) or Content-Length, else none."""
    values = {name.lower(): value for name, value in headers}
    if "chunked" in values.get("transfer-encoding", "").lower():
        return _read_chunked(rfile)
    length = values.get("content-length")
    if length is None:
        return b""
    if not length.isdigit():
        raise BadRequest(f"bad Content-Length {length!r}")
    return _read_exact(rfile, int(length))


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    """Method, target and version of an HTTP/1.x request line."""
    parts = line.decode("latin-1").strip().split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {line[:80]!r}")
    return parts[0], parts[1], parts[2]


def _wants_continue(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "expect" and value.lower() == "100-continue" for name, value in headers)


# --------------------------------------------------------------------------------------------- error shapes


S3_ERRORS = {
    403: ("AccessDenied", "Access Denied"),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}
#: SQS codes from the AWS "common errors" list; `x-amzn-query-error` carries the query-protocol code, which
#: botocore (SQS is awsQueryCompatible) reports as Error.Code in preference to the JSON `__type`.
SQS_ERRORS = {
    403: ("AccessDenied", "Access to the resource is denied."),
    500: ("InternalFailure", "The request processing has failed because of an unknown error, exception or failure."),
    503: ("ServiceUnavailable", "The request has failed due to a temporary failure of the server."),
}
REASONS = {403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}


def _s3_error(status: int, request_id: str) -> tuple[str, bytes]:
    code, message = S3_ERRORS[status]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    )
    return "application/xml", body.encode()


def _sqs_json_error(status: int) -> tuple[str, bytes]:
    code, message = SQS_ERRORS[status]
    body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message})
    return "application/x-amz-json-1.0", body.encode()


def _sqs_query_error(status: int, request_id: str) -> tuple[str, bytes]:
    code, message = SQS_ERRORS[status]
    body = (
        '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">'
        f"<Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message><Detail/></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return "text/xml", body.encode()


def error_reply(req: Request, status: int) -> Reply:
    """The 403/500/503 the real service would send for `req`, in the shape botocore parses for that protocol.

    HEAD gets no body (S3 sends none, and a body the client does not expect would corrupt the keep-alive stream);
    botocore then reports the status as the code ("503"), as it does against AWS.
    """
    request_id = uuid.uuid4().hex.upper()[:16]
    headers = [("x-amz-request-id", request_id), ("x-amzn-RequestId", request_id)]
    if not is_sqs(req):
        content_type, body = _s3_error(status, request_id)
    elif req.header("X-Amz-Target") is not None:
        content_type, body = _sqs_json_error(status)
        headers.append(("x-amzn-query-error", f"{SQS_ERRORS[status][0]};Receiver"))
    else:
        content_type, body = _sqs_query_error(status, request_id)
    if req.method == "HEAD":
        body = b""
    headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    return Reply(status, REASONS[status], headers, body)


# --------------------------------------------------------------------------------------------- the proxy


class FaultProxy:
    """A reverse proxy on 127.0.0.1 that forwards to `upstream` and fails a fraction `rate` of the requests.

    Each request that `only` accepts (all, by default) draws once from ``random.Random(seed)``: below `rate` it
    gets a fault, its kind drawn uniformly from `kinds`. Requests `only` rejects are forwarded untouched and do
    not consume randomness, so the fault sequence over eligible requests depends on the seed alone.
    """

    def __init__(
        self,
        upstream: str,
        rate: float = 0.0,
        kinds: Sequence[str] = ALL_KINDS,
        seed: int = 0,
        stall_s: float = 5.0,
        slow_s: float = 0.3,
        only: Callable[[Request], bool] | None = None,
        upstream_timeout_s: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.kinds = tuple(kinds)
        self.stall_s = stall_s
        self.slow_s = slow_s
        self.only = only
        self.upstream_timeout_s = upstream_timeout_s
        self.stats = Stats()
        #: (method, target, fault kind or None) of each request, in the order the faults were decided
        self.history: deque[tuple[str, str, str | None]] = deque(maxlen=HISTORY_LEN)
        self._rate = 0.0
        self.set_rate(rate)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._handlers: set[_Connection] = set()

    # -- configuration ------------------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the fault probability at run time (e.g. 0 while a test creates buckets, 0.2 during the run)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        self._rate = rate

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: pass as endpoint_url or AWS_ENDPOINT_URL."""
        if self._listener is None:
            raise RuntimeError("FaultProxy.url is known once start() has bound the port")
        return f"http://{LOOPBACK}:{self._listener.getsockname()[1]}"

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind a kernel-chosen loopback port (no race with other runs) and start accepting; returns self."""
        if self._listener is not None:
            raise RuntimeError("FaultProxy already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LOOPBACK, 0))
        listener.listen(128)
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, join_s: float = 2.0) -> None:
        """Stop accepting, cut every live connection (client and upstream sides) and wait briefly for the threads.

        Sockets are shut down rather than just closed: on Linux, close() does not wake a thread blocked in
        recv() or accept() on that socket, shutdown() does. Stalls and slow replies wait on an Event, so they end too.
        """
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown(listener)
            listener.close()
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.abort()
        deadline = time.monotonic() + join_s
        threads = [h.thread for h in handlers] + ([self._accept_thread] if self._accept_thread else [])
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------------------------

    def choose(self, req: Request) -> str | None:
        """The fault for `req`, or None to forward it untouched; records it in `stats` and `history`."""
        self.stats.add("requests")
        kind: str | None = None
        if self.only is None or self.only(req):
            with self._lock:  # one lock for both draws keeps the sequence intact under concurrent clients
                if self._random.random() < self._rate:
                    kind = self._random.choice(self.kinds)
                self.history.append((req.method, req.target, kind))
        else:
            self.history.append((req.method, req.target, None))
        if kind is not None:
            self.stats.add("faults")
            self.stats.add(kind)
            log.debug("fault %s on %s %s", kind, req.method, req.target)
        return kind

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep that stop() interrupts, so a stalled connection does not hold up teardown."""
        self._stopping.wait(seconds)

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # listener shut down by stop()
            self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        """Register and start a handler for `sock`, both under the lock that stop() lists the handlers with.

        So a handler is either in stop()'s list and started (it can be joined), or sees `_stopping` here and the
        connection is closed at once: none escapes stop() in the window between accept() and registration.
        """
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return
            handler = _Connection(self, sock)
            self._handlers.add(handler)
            handler.thread.start()
        self.stats.add("connections")

    def forget(self, handler: _Connection) -> None:
        with self._lock:
            self._handlers.discard(handler)

    def new_upstream(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout_s)


def _shutdown(sock: socket.socket) -> None:
    """shutdown(RDWR), ignoring a socket that is already closed or was never connected."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the kernel sends RST instead of FIN: the client sees ECONNRESET, as on a real
    network when a load balancer or NAT drops the flow."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Connection:
    """One client connection: reads requests in a loop (keep-alive), applies faults, relays to upstream."""

    def __init__(self, proxy: FaultProxy, sock: socket.socket) -> None:
        self.proxy = proxy
        self.sock = sock
        self.rfile: BinaryIO = sock.makefile("rb")
        self.upstream: http.client.HTTPConnection | None = None
        self.thread = threading.Thread(target=self.run, name="fault-proxy-conn", daemon=True)

    def abort(self) -> None:
        """Called by stop() from another thread: wake this connection's thread wherever it blocks."""
        _shutdown(self.sock)
        upstream = self.upstream
        if upstream is not None and upstream.sock is not None:
            _shutdown(upstream.sock)

    def run(self) -> None:
        """The thread body; never raises (pytest turns an exception in a thread into a test failure)."""
        try:
            while not self.proxy.stopping and self.serve_one():
                pass
        except (OSError, http.client.HTTPException) as exc:
            log.debug("connection ended: %r", exc)
        except Exception:  # a bug here must not kill the test run through pytest's thread-exception hook
            log.exception("fault proxy connection failed")
        finally:
            self.close()
            self.proxy.forget(self)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()
        if self.upstream is not None:
            self.upstream.close()

    def read_request(self) -> Request | None:
        """The next request on this connection, or None when the client closed it between requests."""
        line = _readline(self.rfile)
        while line in (b"\r\n", b"\n"):  # tolerated before a request line (RFC 9112 2.2)
            line = _readline(self.rfile)
        if not line:
            return None
        method, target, version = _parse_request_line(line)
        headers = _read_headers(self.rfile)
        if _wants_continue(headers):
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return Request(method, target, version, tuple(headers), _read_body(self.rfile, headers))

    def serve_one(self) -> bool:
        """Read and answer one request; True to keep the connection for another."""
        try:
            req = self.read_request()
        except BadRequest as exc:
            self.send(Reply(400, "Bad Request", [("Content-Length", "0")], close=True))
            log.debug("bad request: %s", exc)
            return False
        if req is None:
            return False
        kind = self.proxy.choose(req)
        if kind == "reset_before":
            _reset(self.sock)
            return False
        if kind == "stall":
            self.proxy.wait(self.proxy.stall_s)
            return False
        if kind in ("http500", "http503", "http403"):
            reply = error_reply(req, int(kind.removeprefix("http")))
        else:
            reply = self.forward(req)
        return self.deliver(req, reply, kind)

    def deliver(self, req: Request, reply: Reply, kind: str | None) -> bool:
        """Send `reply` as the fault kind dictates (late, not at all); True to keep the connection."""
        if kind == "reset_after":
            _reset(self.sock)
            return False
        if kind == "slow":
            self.proxy.wait(self.proxy.slow_s)
        self.send(reply)
        return req.keep_alive and not reply.close

    def send(self, reply: Reply) -> None:
        head = [f"HTTP/1.1 {reply.status} {reply.reason}"]
        head += [f"{name}: {value}" for name, value in reply.headers]
        if reply.close:
            head.append("Connection: close")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)

    def forward(self, req: Request) -> Reply:
        """Relay `req` upstream and return its response; 502 if upstream cannot be reached.

        A persistent upstream connection may have been closed by the server while idle; that shows up as an
        error on the first send or as RemoteDisconnected (no response byte at all), and only then, on a reused
        connection, is the request retried once on a fresh one, as urllib3 does.
        """
        for attempt in (1, 2):
            reused = self.upstream is not None and self.upstream.sock is not None
            try:
                reply = self.exchange(req)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
                self.drop_upstream()
                if reused and attempt == 1 and not self.proxy.stopping:
                    continue
                return self.bad_gateway(exc)
            except (OSError, http.client.HTTPException) as exc:
                self.drop_upstream()
                return self.bad_gateway(exc)
            self.proxy.stats.add("forwarded")
            return reply
        raise AssertionError("unreachable")

    def drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def bad_gateway(self, exc: BaseException) -> Reply:
        self.proxy.stats.add("upstream_errors")
        log.warning("upstream %s:%s failed: %r", self.proxy.upstream_host, self.proxy.upstream_port, exc)
        return Reply(502, "Bad Gateway", [("Content-Length", "0")], close=True)

    def exchange(self, req: Request) -> Reply:
        """One request/response on the upstream connection, headers (Host included) and body as received."""
        if self.upstream is None:
            self.upstream = self.proxy.new_upstream()
        conn = self.upstream
        conn.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for name, value in req.headers:
            if name.lower() not in HOP_BY_HOP:
                conn.putheader(name, value)
        conn.endheaders(req.body or None)
        with conn.getresponse() as resp:
            body = resp.read()
            headers = _relay_headers(resp.getheaders(), req.method, resp.status, body)
            reply = Reply(resp.status, resp.reason, headers, body)
        if resp.will_close:
            self.drop_upstream()
        return reply


def _relay_headers(headers: list[tuple[str, str]], method: str, status: int, body: bytes) -> list[tuple[str, str]]:
    """Upstream headers minus hop-by-hop ones, framed for the client by Content-Length.

    The body was read whole (de-chunked by http.client if upstream chunked it), so it is re-framed with its
    length. HEAD, 204 and 304 responses keep upstream's Content-Length: for HEAD it is the object size, which
    botocore reports as ContentLength.
    """
    framing = {"transfer-encoding", "content-length"}
    kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in framing]
    if method == "HEAD" or status in (204, 304):
        return kept + [(k, v) for k, v in headers if k.lower() == "content-length"]
    return [*kept, ("Content-Length", str(len(body)))]
