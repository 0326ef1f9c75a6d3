#!/usr/bin/env python3
"""Demo control plane for portcullis: a tiny HTTP API behind a bearer token.

Standard library only (Python 3.11+). Demo only: everything is kept in memory and
lost when the process exits. See demo/README.md for the endpoints.
"""

from __future__ import annotations

import argparse
import collections
import copy
import gzip
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_REQUEST_BODY = 64 * 1024 * 1024  # bytes; larger request bodies get 413
MAX_RECORDED = 10_000  # entries kept by /_requests
CHUNK = 64 * 1024
MAX_BIG = 1024 * 1024 * 1024  # /debug/big upper bound (1 GiB)
ARTIFACT_RE = re.compile(r"sha256:[0-9a-f]{64}")
SERVICE_ACTIONS = ("restart", "scale", "deploy")


# --------------------------------------------------------------------------- logging


class _Log:
    """Writes stderr lines from a background thread through a bounded queue, so a stalled or
    unread stderr pipe never blocks request handling (lines are dropped instead)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._q: queue.Queue[str] = queue.Queue(maxsize=10_000)
        threading.Thread(target=self._run, name="log", daemon=True).start()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        try:
            self._q.put_nowait(text)
        except queue.Full:
            pass

    def _run(self) -> None:
        while True:
            text = self._q.get()
            try:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


LOG: _Log  # set in main()


def _printable(text: str, limit: int = 200) -> str:
    out = "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


# --------------------------------------------------------------------------- state


def _artifact(name: str, version: int) -> str:
    return "sha256:" + hashlib.sha256(f"portcullis-demo/{name}@{version}".encode()).hexdigest()


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.services: dict[str, dict] = {}
        for name, replicas in (("web", 3), ("api", 2), ("worker", 1), ("billing", 2)):
            self.services[name] = {
                "name": name,
                "replicas": replicas,
                "artifact": _artifact(name, 1),
                "status": "running",
                "restarts": 0,
            }
        self.requests_lock = threading.Lock()
        self.requests: collections.deque[dict] = collections.deque(maxlen=MAX_RECORDED)

    def record(self, entry: dict) -> None:
        with self.requests_lock:
            self.requests.append(entry)

    def recorded(self) -> list[dict]:
        with self.requests_lock:
            return list(self.requests)

    def clear_recorded(self) -> None:
        with self.requests_lock:
            self.requests.clear()


# --------------------------------------------------------------------------- handler


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close


class ClientGone(Exception):
    """The client went away while we were writing the response."""


def _header_text(value: str) -> str:
    # http.client decodes header bytes as latin-1; recover the UTF-8 text where possible.
    try:
        return value.encode("latin-1").decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return value


def _int_param(query: dict, name: str, default: int | None, lo: int, hi: int) -> int:
    values = query.get(name)
    if not values:
        if default is None:
            raise HttpError(400, f"missing query parameter {name!r}")
        return default
    raw = values[-1]
    if not re.fullmatch(r"[0-9]{1,12}", raw):
        raise HttpError(400, f"query parameter {name!r} must be a non-negative integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise HttpError(400, f"query parameter {name!r} must be between {lo} and {hi}")
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "portcullis-demo-control-plane/1"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True

    server: "Server"

    def version_string(self) -> str:
        return self.server_version

    # Route every method (GET, POST, PUT, FOO, ...) through one dispatcher, so unknown methods
    # get a JSON 405/404 instead of http.server's HTML 501.
    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    # ------------------------------------------------------------------ plumbing

    def handle(self) -> None:
        self.close_connection = True
        try:
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        except (OSError, ValueError):
            pass  # reset / broken pipe / closed file: just drop the connection

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass  # we log one line per request ourselves, in _dispatch

    def log_request(self, code="-", size="-") -> None:
        try:
            self._status = int(code)
        except (TypeError, ValueError):
            pass

    def parse_request(self) -> bool:
        if not self.raw_requestline.endswith(b"\n"):
            self.close_connection = True  # connection closed mid request line: nothing to answer
            return False
        if len(self.raw_requestline.split()) == 2:
            # An HTTP/0.9 line ("GET /path"): http.server would then wait for headers forever.
            self.command, self.path, self.request_version = None, "-", "HTTP/1.1"
            self.send_error(400, "HTTP/0.9 requests are not supported")
            return False
        return super().parse_request()

    def send_error(self, code, message=None, explain=None) -> None:
        # Used by http.server itself for malformed requests (bad request line, too many headers..).
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # always answer with a status line and headers
        try:
            body = json.dumps({"error": message or self.responses.get(code, ("error",))[0]}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass
        LOG.line(f"{self.command or '-'} {_printable(getattr(self, 'path', '-') or '-')} {code}")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except (OSError, ValueError) as e:
            self.close_connection = True
            raise ClientGone() from e

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._started = True
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        try:
            self.end_headers()
        except (OSError, ValueError) as e:
            self.close_connection = True
            raise ClientGone() from e

    def _send(self, status: int, body: bytes, content_type: str | None, headers: dict | None = None) -> None:
        hs: list[tuple[str, str]] = []
        if content_type:
            hs.append(("Content-Type", content_type))
        if status != 204 and status != 304 and status >= 200:
            hs.append(("Content-Length", str(len(body))))
        for name, value in (headers or {}).items():
            hs.append((name, value))
        if self.close_connection:
            hs.append(("Connection", "close"))
        self._start(status, hs)
        if body and self.command != "HEAD" and status not in (204, 304):
            self._write(body)

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _headers_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            value = _header_text(value)
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    def _read_body(self) -> bytes:
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te:
            codings = [t.strip().lower() for v in te for t in v.split(",") if t.strip()]
            if not codings or codings[-1] != "chunked" or cl:
                raise HttpError(400, "unsupported Transfer-Encoding", close=True)
            return self._read_chunked()
        if not cl:
            return b""
        values = {v.strip() for v in cl}
        if len(values) != 1 or not re.fullmatch(r"[0-9]{1,19}", next(iter(values))):
            raise HttpError(400, "invalid Content-Length", close=True)
        length = int(next(iter(values)))
        if length > MAX_REQUEST_BODY:
            raise HttpError(413, f"request body larger than {MAX_REQUEST_BODY} bytes", close=True)
        body = self.rfile.read(length)
        if len(body) != length:
            raise HttpError(400, "request body shorter than Content-Length", close=True)
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise HttpError(400, "malformed chunked body", close=True)
            size_text = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                raise HttpError(400, "malformed chunk size", close=True)
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_REQUEST_BODY:
                raise HttpError(413, f"request body larger than {MAX_REQUEST_BODY} bytes", close=True)
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                raise HttpError(400, "malformed chunked body", close=True)
            parts.append(data)
        for _ in range(100):  # trailers, up to the empty line
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)
            if not line:
                break
        raise HttpError(400, "malformed chunked trailers", close=True)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        self._started = False
        self._status = 0
        note = ""
        state = self.server.state
        path = urlsplit(self.path).path or "/"
        try:
            try:
                body = self._read_body()
            except HttpError:
                if path != "/_requests":
                    state.record(self._entry(b""))
                raise
            if path != "/_requests":
                state.record(self._entry(body))
            self._route(path, body)
        except ClientGone:
            self.close_connection = True
            note = " (client disconnected)"
        except HttpError as e:
            if e.close:
                self.close_connection = True
            try:
                self._json(e.status, {"error": e.message}, e.headers)
            except ClientGone:
                note = " (client disconnected)"
        except Exception:  # noqa: BLE001 - demo server: any bug becomes a 500, never a crash
            LOG.line("control-plane: internal error:\n" + traceback.format_exc().rstrip())
            self.close_connection = True
            if not self._started:
                try:
                    self._json(500, {"error": "internal server error"})
                except Exception:  # noqa: BLE001
                    pass
        LOG.line(f"{_printable(self.command)} {_printable(self.path)} {self._status or '-'}{note}")

    def _entry(self, body: bytes) -> dict:
        return {
            "method": self.command,
            "path": self.path,
            "headers": self._headers_dict(),
            "body": body.decode("utf-8", errors="replace"),
        }

    def _allow(self, *methods: str) -> None:
        if self.command not in methods:
            raise HttpError(
                405,
                f"method {self.command} not allowed on {urlsplit(self.path).path}; allowed: {', '.join(methods)}",
                {"Allow": ", ".join(methods)},
            )

    def _route(self, path: str, body: bytes) -> None:
        if path == "/_requests":
            self._allow("GET", "DELETE")
            if self.command == "GET":
                self._json(200, self.server.state.recorded())
            else:
                self.server.state.clear_recorded()
                self._send(204, b"", None)
            return
        if path.startswith("/debug/"):
            handler = DEBUG_ROUTES.get(path[len("/debug/"):])
            if handler is None:
                raise HttpError(404, f"not found: {path}")
            self._allow("GET")
            query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
            handler(self, query)
            return
        if path == "/v1" or path.startswith("/v1/"):
            self._check_auth()
            self._route_v1(path, body)
            return
        raise HttpError(404, f"not found: {path}")

    def _check_auth(self) -> None:
        values = self.headers.get_all("Authorization") or []
        ok = False
        if len(values) == 1:
            try:
                got = values[0].strip(" \t").encode("latin-1")
            except UnicodeEncodeError:
                got = b""
            ok = hmac.compare_digest(got, self.server.expected_auth)
        if not ok:
            raise HttpError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    # ------------------------------------------------------------------ /v1

    def _route_v1(self, path: str, body: bytes) -> None:
        parts = path.split("/")[1:]  # "", "v1", "services", NAME, ACTION
        if parts[:2] != ["v1", "services"] or len(parts) > 5:
            raise HttpError(404, f"not found: {path}")
        if len(parts) == 2:
            self._allow("GET")
            state = self.server.state
            with state.lock:
                services = [copy.deepcopy(state.services[n]) for n in sorted(state.services)]
            self._json(200, {"services": services})
            return
        name = unquote(parts[2])
        if not name:
            raise HttpError(404, f"not found: {path}")
        if len(parts) == 3:
            self._allow("GET")
            self._json(200, self._update(name, lambda s: None))
            return
        action = parts[3]
        if action not in SERVICE_ACTIONS:
            raise HttpError(404, f"not found: {path}")
        self._allow("POST")
        self._update(name, lambda s: None)  # 404 for an unknown service beats 400 for its body
        if action == "restart":
            if body.strip():
                self._parse_json(body)  # any JSON is accepted, but it must be JSON
            svc = self._update(name, lambda s: s.__setitem__("restarts", s["restarts"] + 1))
            self._json(200, {"service": svc, "restarted": True})
        elif action == "scale":
            replicas = self._field(body, "replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool):
                raise HttpError(400, "\"replicas\" must be an integer")
            if not 0 <= replicas <= 100:
                raise HttpError(400, f"\"replicas\" must be between 0 and 100, got {replicas}")
            self._json(200, self._update(name, lambda s: s.__setitem__("replicas", replicas)))
        else:  # deploy
            artifact = self._field(body, "artifact")
            if not isinstance(artifact, str):
                raise HttpError(400, "\"artifact\" must be a string")
            if not ARTIFACT_RE.fullmatch(artifact):
                raise HttpError(400, "\"artifact\" must be \"sha256:\" followed by 64 lowercase hex digits")
            self._json(200, self._update(name, lambda s: s.__setitem__("artifact", artifact)))

    def _update(self, name: str, change) -> dict:
        state = self.server.state
        with state.lock:
            svc = state.services.get(name)
            if svc is None:
                raise HttpError(404, f"no service named {name}")
            change(svc)
            return copy.deepcopy(svc)

    def _parse_json(self, body: bytes):
        try:
            return json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "invalid JSON body: not UTF-8") from None
        except json.JSONDecodeError as e:
            raise HttpError(400, f"invalid JSON body: {e}") from None

    def _field(self, body: bytes, name: str):
        if not body.strip():
            raise HttpError(400, f"request body must be a JSON object with \"{name}\"")
        obj = self._parse_json(body)
        if not isinstance(obj, dict):
            raise HttpError(400, f"request body must be a JSON object with \"{name}\"")
        if name not in obj:
            raise HttpError(400, f"missing field \"{name}\"")
        return obj[name]

    # ------------------------------------------------------------------ /debug

    def _debug_ping(self, query) -> None:
        self._send(200, b"pong", "text/plain")

    def _echo_obj(self) -> dict:
        return {"method": self.command, "path": self.path, "headers": self._headers_dict()}

    def _echo_auth_header(self) -> dict:
        auth = self.headers.get("Authorization")
        return {"X-Echo-Authorization": auth.strip(" \t")} if auth is not None else {}

    def _debug_echo(self, query) -> None:
        self._json(200, self._echo_obj(), self._echo_auth_header())

    def _debug_gzip_echo(self, query) -> None:
        body = gzip.compress(json.dumps(self._echo_obj()).encode(), mtime=0)
        headers = {"Content-Encoding": "gzip", **self._echo_auth_header()}
        self._send(200, body, "application/json", headers)

    def _debug_redirect(self, query) -> None:
        target = (query.get("to") or [None])[-1]
        if not target:
            raise HttpError(400, "missing query parameter 'to'")
        if any(c in target for c in "\r\n\0"):
            raise HttpError(400, "query parameter 'to' must not contain CR, LF or NUL")
        status = _int_param(query, "status", 302, 300, 399)
        self._send(status, b"", None, {"Location": target})

    def _debug_big(self, query) -> None:
        n = _int_param(query, "bytes", None, 0, MAX_BIG)
        self._start(200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        if self.command == "HEAD":
            return
        block = b"x" * CHUNK
        left = n
        while left > 0:
            step = min(left, CHUNK)
            self._write(block if step == CHUNK else block[:step])
            left -= step

    def _debug_trickle(self, query) -> None:
        chunks = _int_param(query, "chunks", 10, 0, 100_000)
        delay = _int_param(query, "delay_ms", 100, 0, 600_000)
        chunked = self.request_version != "HTTP/1.0"
        headers = [("Content-Type", "text/plain")]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:  # HTTP/1.0 has no chunked encoding: delimit the body by closing the connection
            self.close_connection = True
            headers.append(("Connection", "close"))
        self._start(200, headers)
        if self.command == "HEAD":
            return
        for _ in range(chunks):
            if delay:
                time.sleep(delay / 1000)
            self._write(b"1\r\nx\r\n" if chunked else b"x")
        if chunked:
            self._write(b"0\r\n\r\n")

    def _debug_slow(self, query) -> None:
        delay = _int_param(query, "delay_ms", 1000, 0, 600_000)
        time.sleep(delay / 1000)
        self._send(200, b"slow", "text/plain")

    def _debug_headers(self, query) -> None:
        count = _int_param(query, "count", 10, 0, 10_000)
        size = _int_param(query, "size", 16, 0, 1024 * 1024)
        if count * size > 64 * 1024 * 1024:
            raise HttpError(400, "count * size must be at most 64 MiB")
        filler = "a" * size
        headers = [(f"X-Filler-{i}", filler) for i in range(count)]
        headers += [("Content-Type", "text/plain"), ("Content-Length", "2")]
        self._start(200, headers)
        if self.command != "HEAD":
            self._write(b"ok")


DEBUG_ROUTES = {
    "ping": Handler._debug_ping,
    "echo": Handler._debug_echo,
    "gzip-echo": Handler._debug_gzip_echo,
    "redirect": Handler._debug_redirect,
    "big": Handler._debug_big,
    "trickle": Handler._debug_trickle,
    "slow": Handler._debug_slow,
    "headers": Handler._debug_headers,
}


# --------------------------------------------------------------------------- server


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address, family, token: str, ssl_context: ssl.SSLContext | None):
        self.address_family = family
        self.state = State()
        self.expected_auth = b"Bearer " + token.encode("utf-8")
        self.ssl_context = ssl_context
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall for
        # seconds on machines with a broken resolver. We don't need the name.
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        # TLS handshake in the connection's own thread, so a slow client can't stall accept().
        request.settimeout(10)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.settimeout(0)
                tls.unwrap()  # send close_notify without waiting for the peer's
            except (OSError, ValueError):
                pass
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return
        LOG.line("control-plane: error on a connection:\n" + traceback.format_exc().rstrip())


class _Stop(Exception):
    pass


def _die(message: str, code: int = 2) -> None:
    print(f"control-plane: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        _die(f"--listen must be HOST:PORT (e.g. 127.0.0.1:8091), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="control-plane.py",
        description="Demo control-plane HTTP API for portcullis (in memory, demo only).",
    )
    parser.add_argument("--listen", default="127.0.0.1:8091", metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8091; port 0 picks a free port)")
    parser.add_argument("--token", default=None,
                        help="bearer token required on /v1/* (default: $CONTROL_PLANE_TOKEN)")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain; serve HTTPS")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="once listening, atomically write the base URL to PATH")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines on stderr")
    args = parser.parse_args(argv)

    global LOG
    LOG = _Log(args.quiet)

    token = args.token if args.token is not None else os.environ.get("CONTROL_PLANE_TOKEN", "")
    if not token:
        _die("no bearer token: pass --token TOKEN or set CONTROL_PLANE_TOKEN")
    if any(not c.isprintable() or c.isspace() for c in token):
        _die("the token must not contain whitespace or control characters")
    if bool(args.tls_cert) != bool(args.tls_key):
        _die("--tls-cert and --tls-key go together")

    host, port = _parse_listen(args.listen)

    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            _die(f"cannot load TLS certificate/key: {e}")

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = Server((host, port), family, token, ctx)
    except OSError as e:
        _die(f"cannot listen on {args.listen}: {e}", 1)

    bound_port = server.server_address[1]
    url_host = f"[{host}]" if ":" in host else host
    base_url = f"{'https' if ctx else 'http'}://{url_host}:{bound_port}"

    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(base_url)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, args.ready_file)
        except OSError as e:
            server.server_close()
            _die(f"cannot write --ready-file {args.ready_file}: {e}", 1)

    def stop(signum, frame):
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    try:
        print(f"control-plane: listening on {base_url}", flush=True)
    except OSError:
        pass

    try:
        server.serve_forever(poll_interval=0.2)
    except _Stop:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
