"""A flaky HTTP/1.1 reverse proxy on loopback, to put in front of moto's S3 server in tests.

boto3 reaches it through ``endpoint_url`` / ``AWS_ENDPOINT_URL``.  Every request is read in full first; then, with
probability ``fail_rate`` (or always, once ``break_after`` has tripped), it is answered with a fault instead of
being forwarded, so upstream never sees a faulted request:

* ``"reset"``: the connection is closed with SO_LINGER 0 (a TCP reset, no answer at all);
* ``"500"``: an S3-style XML ``InternalError``;
* ``"503"``: an S3-style XML ``SlowDown``.

Otherwise the request goes upstream with its method, target and headers unchanged (the ``Host`` header stays the
one the client sent, so moto's virtual-host / path routing and the SigV4 ``host`` header still agree), and the
upstream status, headers and body come back.

Request bodies sent with ``Transfer-Encoding: chunked`` are de-chunked and forwarded with a ``Content-Length``;
every other header (``Content-Encoding: aws-chunked``, ``x-amz-decoded-content-length``, ``x-amz-trailer``,
``x-amz-content-sha256`` ...) is kept.  That is faithful for boto3's streaming uploads: their aws-chunked framing,
chunk signatures and checksum trailer are *content*, so they reach moto byte for byte.  Raw chunked forwarding
would be worse: moto's werkzeug server can parse neither chunk extensions nor HTTP trailers.  HTTP-level trailer
fields (after the last chunk; boto3 sends none) are forwarded as headers, unless a header of that name exists.

Standard library only.  Thread-safe.
"""

import hashlib
import http.client
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .loopback import LoopbackServer

MODES = ("reset", "500", "503")  # drawn by random faults: all worth retrying
RULE_MODES = MODES + ("403",)  # for fail_matching: 403 AccessDenied is never retried by botocore
_ETAG_XML = re.compile(r"(<ETag>)(.*?)(</ETag>)")
_HEX32 = re.compile(r"[0-9a-f]{32}")


def _opaque(etag):
    """The ETag an SSE-KMS bucket would give: 32 hex digits that are not the content's MD5."""
    return _HEX32.sub(lambda m: hashlib.md5(b"kms:" + m.group(0).encode()).hexdigest(), etag)


# Per-connection headers a proxy must not pass on (RFC 9110 7.6.1), plus Expect: the proxy has already answered
# "100 Continue" itself and holds the whole body.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)

_S3_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy = None  # the owning FlakyProxy, set before serving

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._to_reset = set()
        self._reset_lock = threading.Lock()

    def mark_reset(self, sock):
        with self._reset_lock:
            self._to_reset.add(sock)

    def shutdown_request(self, request):
        with self._reset_lock:
            reset = request in self._to_reset
            self._to_reset.discard(request)
        if reset:
            # No shutdown(SHUT_WR) first: that would send a polite FIN before the reset.
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # Clients hanging up are expected: keep stderr quiet, but show real bugs.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the client, as botocore expects
    server_version = "flaky-proxy"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format, *args):
        pass

    def _proxy(self):
        self.server.proxy._handle(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _proxy


class FlakyProxy(LoopbackServer):
    """``with FlakyProxy(moto.endpoint_url, fail_rate=0.3) as proxy: boto3.client("s3", endpoint_url=proxy.url)``."""

    server_class, handler_class = _Server, _Handler
    thread_name, owner_attr = "flaky-proxy", "proxy"

    def __init__(
        self,
        upstream_url,
        fail_rate=0.0,
        seed=0,
        modes=MODES,
        host="127.0.0.1",
        port=0,
        upstream_timeout=60.0,
        opaque_etags=False,
    ):
        parsed = urllib.parse.urlsplit(upstream_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream_url!r}")
        self.upstream_url = upstream_url
        self._upstream = (parsed.hostname, parsed.port or 80)
        self.upstream_timeout = float(upstream_timeout)
        # As an SSE-KMS bucket answers: every ETag (headers and listings) is not the MD5 of the
        # object's bytes, but stays the same for the same object.
        self.opaque_etags = bool(opaque_etags)
        self.modes = _check_modes(modes)
        self.fail_rate = _check_rate(fail_rate)
        self.host, self._port = host, port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests = []
        self._break = None  # [forwards left before breaking, mode] once break_after is called
        self._rules = []  # [(method or None, compiled path pattern, mode)] from fail_matching
        self._server = self._thread = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    # -- faults ------------------------------------------------------------------------------------------------

    def set_fail_rate(self, fail_rate, modes=None):
        """Change the random fault rate (and, if given, the modes drawn from) from now on."""
        with self._lock:
            self.fail_rate = _check_rate(fail_rate)
            if modes is not None:
                self.modes = _check_modes(modes)

    def break_after(self, n, mode="503"):
        """Forward ``n`` more requests (random faults aside), then fail every request with ``mode`` until heal()."""
        _check_modes((mode,))
        if int(n) < 0:
            raise ValueError(f"n must be >= 0, not {n!r}")
        with self._lock:
            self._break = [int(n), mode]

    def heal(self):
        """Undo break_after and fail_matching (the random fault rate stays)."""
        with self._lock:
            self._break = None
            self._rules.clear()

    def fail_matching(self, pattern, mode="403", method=None):
        """Fail every request whose path matches the regex ``pattern`` (and ``method``, if given) with
        ``mode`` until heal(): a bucket that refuses writes to one prefix, say ("403": AccessDenied,
        which botocore does not retry)."""
        if mode not in RULE_MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {RULE_MODES}")
        with self._lock:
            self._rules.append((method.upper() if method else None, re.compile(pattern), mode))

    def _decide(self, method=None, path=""):
        """The fault mode for the next request, or None to forward it."""
        with self._lock:
            for rule_method, pattern, mode in self._rules:
                if (rule_method is None or rule_method == method) and pattern.search(path):
                    return mode
            if self._break is not None and self._break[0] <= 0:
                return self._break[1]
            if self.fail_rate and self._rng.random() < self.fail_rate:
                return self._rng.choice(self.modes)
            if self._break is not None:
                self._break[0] -= 1
            return None

    # -- recording ---------------------------------------------------------------------------------------------

    @property
    def requests(self):
        """Every request so far: {"method", "path", "faulted": mode or None, "status": int or None (reset),
        "chunked": bool, "body_bytes": int (de-chunked), "host", "headers": {lower-case name: value} as received,
        "error": str or None (upstream unreachable), "time"}."""
        with self._lock:
            return [dict(record) for record in self._requests]

    def count(self, method=None, faulted=None):
        """How many requests matched: ``method`` (None: any); ``faulted`` None: any, True: faulted in any mode,
        False: forwarded, or a mode name ("reset", "500", "503")."""

        def wanted(record):
            if method is not None and record["method"] != method.upper():
                return False
            if faulted is None:
                return True
            if faulted is True or faulted is False:
                return (record["faulted"] is not None) == faulted
            return record["faulted"] == faulted

        return sum(1 for record in self.requests if wanted(record))

    def reset(self):
        """Clear the request log (fault settings stay)."""
        with self._lock:
            self._requests.clear()

    def _record(self, record):
        with self._lock:
            self._requests.append(record)

    # -- request handling ---------------------------------------------------------------------------------------

    def _handle(self, handler):
        headers = handler.headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            if chunked:
                body, trailers = _read_chunked(handler.rfile)
            else:
                body, trailers = handler.rfile.read(int(headers.get("content-length") or 0)), []
        except (ValueError, ConnectionError) as error:
            self._record(_record(handler, None, None, False, 0, f"bad request body: {error}"))
            handler.close_connection = True
            return
        mode = self._decide(handler.command, handler.path)
        record = _record(handler, mode, None, chunked, len(body))
        if mode == "reset":
            self._record(record)
            handler.close_connection = True
            try:
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            handler.server.mark_reset(handler.connection)
            return
        if mode is not None:
            record["status"] = _S3_ERRORS[mode][0]
            self._record(record)  # before answering: a client holding its answer finds the request logged
            self._send_s3_error(handler, mode)
            return
        try:
            status, reason, answer_headers, payload = self._forward(handler, body, trailers)
        except (OSError, http.client.HTTPException) as error:
            record["status"], record["error"] = 502, f"{type(error).__name__}: {error}"
            self._record(record)
            self._send_s3_error(handler, "502")
            return
        record["status"] = status
        self._record(record)
        if self.opaque_etags:
            answer_headers = [(n, _opaque(v) if n.lower() == "etag" else v) for n, v in answer_headers]
            payload = (
                _ETAG_XML.sub(
                    lambda m: m.group(1) + _opaque(m.group(2)) + m.group(3), payload.decode("latin-1")
                ).encode("latin-1")
                if b"<ETag>" in payload
                else payload
            )
        self._relay(handler, status, reason, answer_headers, payload)

    def _forward(self, handler, body, trailers):
        """Send the request upstream; (status, reason, [(name, value)], body bytes)."""
        method = handler.command
        connection_tokens = {token.strip().lower() for token in handler.headers.get("connection", "").split(",")}
        framed = "content-length" in handler.headers or "transfer-encoding" in handler.headers
        out = [
            (name, value)
            for name, value in handler.headers.items()
            if name.lower() not in _HOP_BY_HOP
            and name.lower() not in connection_tokens
            and name.lower() != "content-length"
        ]
        present = {name.lower() for name, _ in out}
        out += [(name, value) for name, value in trailers if name.lower() not in present | _HOP_BY_HOP]
        if body or framed:
            out.append(("Content-Length", str(len(body))))
        conn = http.client.HTTPConnection(*self._upstream, timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, handler.path, skip_host=True, skip_accept_encoding=True)
            if "host" not in present:
                conn.putheader("Host", f"{self._upstream[0]}:{self._upstream[1]}")
            for name, value in out:
                conn.putheader(name, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = response.read()  # nothing for HEAD, 204 and 304: http.client knows
            return response.status, response.reason, response.getheaders(), payload
        finally:
            conn.close()

    @staticmethod
    def _relay(handler, status, reason, headers, payload):
        handler.send_response_only(status, reason or None)  # upstream's own Date and Server headers follow
        bodiless = handler.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        for name, value in headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP or (lower == "content-length" and not bodiless):
                continue
            handler.send_header(name, value)
        if not bodiless:
            handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if not bodiless:
            handler.wfile.write(payload)
        handler.wfile.flush()

    @staticmethod
    def _send_s3_error(handler, mode):
        if mode == "502":  # upstream unreachable: what a real proxy would say
            status, reason, code, message = 502, "Bad Gateway", "BadGateway", "The proxy could not reach upstream."
        else:
            status, reason, code, message = _S3_ERRORS[mode]
        request_id = uuid.uuid4().hex[:16].upper()
        resource = urllib.parse.urlsplit(handler.path).path
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{_xml(resource)}</Resource>"
            f"<RequestId>{request_id}</RequestId><HostId>flaky-proxy</HostId></Error>"
        ).encode()
        if handler.command == "HEAD":
            payload = b""  # S3 answers HEAD errors without a body
        handler.send_response(status, reason)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("x-amz-request-id", request_id)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()


def _record(handler, faulted, status, chunked, body_bytes, error=None):
    return {
        "method": handler.command,
        "path": handler.path,
        "faulted": faulted,
        "status": status,
        "chunked": chunked,
        "body_bytes": body_bytes,
        "host": handler.headers.get("host"),
        "error": error,
        "headers": {name.lower(): value for name, value in handler.headers.items()},
        "time": time.time(),
    }


def _read_chunked(rfile):
    """De-chunk a ``Transfer-Encoding: chunked`` body: (bytes, [(trailer name, value)])."""
    parts = []
    while True:
        line = rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise ConnectionError("chunked body ended early")
        size = int(line.split(b";", 1)[0].strip(), 16)  # chunk extensions (";name=value") are dropped
        if size < 0:
            raise ValueError("negative chunk size")
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) < size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise ConnectionError("chunked body ended early")
        parts.append(data)
    trailers = []
    while True:
        line = rfile.readline(65537)
        if not line:
            raise ConnectionError("chunked body ended early")
        if line in (b"\r\n", b"\n"):
            return b"".join(parts), trailers
        name, _, value = line.decode("latin-1").partition(":")
        trailers.append((name.strip(), value.strip()))


def _xml(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _check_modes(modes):
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    if not modes or any(mode not in MODES for mode in modes):
        raise ValueError(f"modes must be among {MODES}, not {modes!r}")
    return modes


def _check_rate(rate):
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"fail_rate must be within [0, 1], not {rate!r}")
    return float(rate)
