"""A scripted stand-in for the Anthropic Messages API (`POST /v1/messages`), on loopback.

agentd's `claude-*` models talk to it when `AGENTD_ANTHROPIC_BASE_URL` points here. It
speaks the streaming SSE format of the real API: `message_start`, `content_block_start` /
`content_block_delta` / `content_block_stop` per block (text, thinking with a
`signature_delta`, redacted thinking, tool use with its input split into several
`input_json_delta` pieces), `ping`, `message_delta` (stop reason, usage) and `message_stop`.

Scripting, per test:

    fake = FakeAnthropic().start()
    fake.enqueue(message(text("Hello"), stop_reason="end_turn"))    # next request gets this
    fake.enqueue(error(529), error(529), reply_text("finally"))      # one reply per request
    fake.handler = lambda req: reply_text("slow", delay=3) if "MARK" in req.text else None
    fake.default = reply_text("fallback")                            # when nothing else answers

A reply is chosen per request: `handler(request)` first (None falls through), then the
queue, then `default`. Every request is recorded (`fake.requests`, `fake.wait_for_requests`)
with its headers and parsed JSON body. `hang(...)` streams part of a reply then stalls until
the client disconnects; the recorded request's `disconnected` event (and `disconnected_at`)
say when that happened.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

__all__ = [
    "FakeAnthropic",
    "Recorded",
    "StreamReply",
    "ErrorReply",
    "text",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "message",
    "reply_text",
    "error",
    "stream_error",
    "hang",
]

_ids = itertools.count(1)


# ----------------------------------------------------------------------------- replies


def text(s: str, pieces: int = 3) -> dict:
    """A text block, streamed as `pieces` text_delta events."""
    return {"type": "text", "text": s, "pieces": pieces}


def thinking(s: str, signature: str = "c2lnbmF0dXJl", pieces: int = 2) -> dict:
    """A thinking block: thinking_delta pieces, then one signature_delta."""
    return {"type": "thinking", "thinking": s, "signature": signature, "pieces": pieces}


def redacted_thinking(data: str) -> dict:
    return {"type": "redacted_thinking", "data": data}


def tool_use(name: str, input: dict, id: Optional[str] = None, pieces: int = 3) -> dict:
    """A tool_use block whose JSON input arrives as `pieces` input_json_delta fragments."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_fake_{next(_ids)}",
        "name": name,
        "input": input,
        "pieces": pieces,
    }


@dataclass
class StreamReply:
    blocks: list
    stop_reason: Optional[str] = None
    input_tokens: int = 11
    output_tokens: int = 7
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    delay: float = 0.0  # before the response headers
    chunk_delay: float = 0.0  # between SSE events
    # Stall after this many SSE events have been written, until the client disconnects.
    hang_after: Optional[int] = None
    max_hang: float = 30.0
    # Replace everything from this SSE event on with an in-stream `error` event, then end.
    error_after: Optional[int] = None
    error_type: str = "overloaded_error"


@dataclass
class ErrorReply:
    status: int
    type: str
    message: str
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


def message(*blocks: dict, stop_reason: Optional[str] = None, **kw: Any) -> StreamReply:
    """A streamed message; `stop_reason` defaults to tool_use when a block is one, else end_turn."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    return StreamReply(blocks=list(blocks), stop_reason=stop_reason, **kw)


def reply_text(s: str, **kw: Any) -> StreamReply:
    return message(text(s), **kw)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error(status: int, message: Optional[str] = None, type: Optional[str] = None,
          retry_after: Optional[float] = None, delay: float = 0.0) -> ErrorReply:
    """An HTTP error with the API's error body `{"type":"error","error":{...}}`."""
    t = type or _ERROR_TYPES.get(status, "api_error")
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return ErrorReply(status=status, type=t, message=message or f"fake {t}", headers=headers,
                      delay=delay)


def stream_error(error_type: str = "overloaded_error", after: int = 3) -> StreamReply:
    """A 200 stream that breaks off with an `event: error` after `after` SSE events."""
    return StreamReply(blocks=[text("this will not finish", pieces=2)], stop_reason="end_turn",
                       error_after=after, error_type=error_type)


def hang(partial: str = "partial answer", max_hang: float = 30.0) -> StreamReply:
    """Start streaming a text reply, then stall (sending nothing) until the client disconnects."""
    # message_start, content_block_start, first text_delta: then silence.
    return StreamReply(blocks=[text(partial, pieces=1)], stop_reason="end_turn", hang_after=3,
                       max_hang=max_hang)


# ----------------------------------------------------------------------------- recording


@dataclass
class Recorded:
    index: int
    method: str
    path: str
    headers: dict  # lower-cased names
    raw: bytes
    body: Any  # parsed JSON, or None when the body was not JSON
    received_at: float
    reply: Any = None
    disconnected: threading.Event = field(default_factory=threading.Event)
    disconnected_at: Optional[float] = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def text(self) -> str:
        """The raw body as text (for marker searches)."""
        return self.raw.decode("utf-8", "replace")

    @property
    def messages(self) -> list:
        return (self.body or {}).get("messages", [])

    def blocks(self, type_: str) -> list:
        """Every content block of `type_` in the request's messages, in order."""
        out = []
        for m in self.messages:
            c = m.get("content")
            if isinstance(c, list):
                out.extend(b for b in c if isinstance(b, dict) and b.get("type") == type_)
        return out


# ----------------------------------------------------------------------------- server


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _split(s: str, n: int) -> list:
    n = max(1, min(n, len(s))) if s else 1
    size = -(-len(s) // n) if s else 0
    return [s[i:i + size] for i in range(0, len(s), size)] if s else [""]


def _events_for(reply: StreamReply, model: str) -> list:
    msg_id = f"msg_fake_{next(_ids)}"
    out = [_sse("message_start", {
        "type": "message_start",
        "message": {
            "id": msg_id, "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "cache_creation_input_tokens": reply.cache_creation_input_tokens,
                "cache_read_input_tokens": reply.cache_read_input_tokens,
                "output_tokens": 1,
            },
        },
    })]
    for i, b in enumerate(reply.blocks):
        t = b["type"]
        if t == "text":
            out.append(_sse("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "text", "text": ""}}))
            for piece in _split(b["text"], b.get("pieces", 1)):
                out.append(_sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "text_delta", "text": piece}}))
        elif t == "thinking":
            out.append(_sse("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
            for piece in _split(b["thinking"], b.get("pieces", 1)):
                out.append(_sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "thinking_delta", "thinking": piece}}))
            out.append(_sse("content_block_delta", {
                "type": "content_block_delta", "index": i,
                "delta": {"type": "signature_delta", "signature": b["signature"]}}))
        elif t == "redacted_thinking":
            out.append(_sse("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "redacted_thinking", "data": b["data"]}}))
        elif t == "tool_use":
            out.append(_sse("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}))
            for piece in _split(json.dumps(b["input"]), b.get("pieces", 1)):
                out.append(_sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}))
        else:
            raise ValueError(f"unknown fake block type {t!r}")
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        if i == 0:
            out.append(_sse("ping", {"type": "ping"}))
    out.append(_sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": reply.output_tokens},
    }))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake: GET not served"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = fake._record(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw, body)
        try:
            if self.path.split("?")[0] != "/v1/messages":
                self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": f"fake: no route {self.path}"}})
                return
            reply = fake._choose(rec)
            rec.reply = reply
            if isinstance(reply, ErrorReply):
                self._sleep(reply.delay, rec)
                self._json(reply.status, {"type": "error", "error": {"type": reply.type, "message": reply.message}},
                           reply.headers)
                return
            self._stream(reply, rec)
        except (BrokenPipeError, ConnectionResetError):
            fake._disconnected(rec)
            self.close_connection = True
        finally:
            rec.finished.set()

    def _sleep(self, seconds: float, rec: Recorded) -> None:
        end = time.monotonic() + seconds
        while not self.server.fake._stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _json(self, status: int, obj: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_fake_{next(_ids)}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, reply: StreamReply, rec: Recorded) -> None:
        self._sleep(reply.delay, rec)
        model = (rec.body or {}).get("model", "claude-fake")
        events = _events_for(reply, model)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", f"req_fake_{next(_ids)}")
        self.end_headers()
        self.wfile.flush()
        for i, ev in enumerate(events):
            if reply.error_after is not None and i == reply.error_after:
                self._chunk(_sse("error", {"type": "error", "error": {
                    "type": reply.error_type, "message": f"fake in-stream {reply.error_type}"}}))
                break
            if reply.hang_after is not None and i == reply.hang_after:
                self._hang(rec, reply.max_hang)
                self.close_connection = True
                return
            if i and reply.chunk_delay:
                self._sleep(reply.chunk_delay, rec)
            self._chunk(ev)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _hang(self, rec: Recorded, max_hang: float) -> None:
        """Send nothing until the peer closes the connection (or the fake stops)."""
        sock: socket.socket = self.connection
        end = time.monotonic() + max_hang
        while time.monotonic() < end and not self.server.fake._stopping.is_set():
            r, _, _ = select.select([sock], [], [], 0.02)
            if r:
                try:
                    data = sock.recv(1, socket.MSG_PEEK)
                except (ConnectionResetError, OSError):
                    data = b""
                if data == b"":
                    self.server.fake._disconnected(rec)
                    return
                time.sleep(0.02)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: "FakeAnthropic"


class FakeAnthropic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: list = []
        self.requests: list[Recorded] = []
        self.handler: Optional[Callable[[Recorded], Any]] = None
        self.default: Any = reply_text("fake default reply")
        self._stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # lifecycle
    def start(self) -> "FakeAnthropic":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # scripting
    def enqueue(self, *replies: Any) -> None:
        with self._lock:
            self._queue.extend(replies)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _choose(self, rec: Recorded) -> Any:
        if self.handler is not None:
            r = self.handler(rec)
            if r is not None:
                return r
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        return self.default

    # recording
    def _record(self, method: str, path: str, headers: dict, raw: bytes, body: Any) -> Recorded:
        with self._cond:
            rec = Recorded(index=len(self.requests), method=method, path=path, headers=headers, raw=raw,
                           body=body, received_at=time.monotonic())
            self.requests.append(rec)
            self._cond.notify_all()
            return rec

    def _disconnected(self, rec: Recorded) -> None:
        with self._cond:
            if rec.disconnected_at is None:
                rec.disconnected_at = time.monotonic()
            rec.disconnected.set()
            self._cond.notify_all()

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list:
        """Block until at least `n` requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake upstream got {len(self.requests)} request(s), expected {n}")
                self._cond.wait(left)
            return list(self.requests)

    def messages_requests(self) -> list:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == "/v1/messages"]
