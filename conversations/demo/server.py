"""The offline demo gateway's HTTP side: a real server speaking the Messages streaming
protocol, for the offline demo (`manage.py fakegateway`), the tests and the benchmarks.

It answers `POST .../v1/messages` with `message_start`, `content_block_*`, `ping`,
`message_delta` (usage, stop reason) and `message_stop` events, or with one JSON message
when not streaming, as the `Script` of the request says (`conversations.demo.script`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from conversations.demo.script import (
    DEMO_MODEL,
    TOKEN,
    Script,
    demo_reply,
    demo_title,
    numbered_words,
)

STATUS_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)
    tokens_sent: int = 0
    completed: bool = False
    disconnected_at: float | None = None


class FakeGateway:
    """An asyncio HTTP/1.1 server (keep-alive, chunked SSE). Use `start_in_thread` in tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_delay: float = 0.0,
        stamp: bool = False,
        context_limit: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token_delay = token_delay
        # Benchmarks: each token is "<monotonic ns> " so clients can measure added latency.
        self.stamp = stamp
        # A model's context window: a request whose prompt counts more tokens (`count_tokens`)
        # is refused with Anthropic's own 400, as the real API refuses it.
        self.context_limit = context_limit
        # Prefixes marked with cache_control already written: a second request with the
        # same prefix reads it (Anthropic keeps them 5 minutes; here, until `reset`).
        self.cached_prefixes: set[str] = set()
        # Prompts refused as too long (tests count them).
        self.refused_too_long = 0
        self.requests: list[RecordedRequest] = []
        self.scripts: deque[Script] = deque()
        self.side_requests: list[RecordedRequest] = []
        self.side_scripts: deque[Script] = deque()
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def start_in_thread(self) -> FakeGateway:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-gateway", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop_thread(self) -> None:
        if self._loop is None or self._server is None:
            return
        loop, server = self._loop, self._server

        async def shutdown() -> None:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(5)

    def enqueue(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    def reset(self) -> None:
        self.requests.clear()
        self.scripts.clear()
        self.side_requests.clear()
        self.side_scripts.clear()
        self.cached_prefixes.clear()
        self.refused_too_long = 0

    # --- HTTP ----------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio drops its own reference to a connection's task when the peer goes away;
        # hold one until the task ends, or it may be garbage-collected while pending.
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(length) if length else b""
                keep_open = await self._respond(method, path, headers, raw, reader, writer)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if method != "POST" or not path.split("?")[0].endswith("/v1/messages"):
            await self._send_json(
                writer,
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"No route {method} {path}"},
                },
            )
            return True
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            await self._send_json(
                writer,
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "Body is not JSON"},
                },
            )
            return True
        record = RecordedRequest(method, path, headers, body)
        # Replies stream; non-streaming calls are the app's own side requests (titles).
        # They are kept apart so tests can reason about the turns they script.
        if body.get("stream"):
            self.requests.append(record)
        else:
            self.side_requests.append(record)
        prompt = count_tokens(body)
        if self.context_limit is not None and prompt > self.context_limit:
            # Anthropic's exact answer; no script is used up by a refused prompt.
            self.refused_too_long += 1
            await self._send_json(
                writer,
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"prompt is too long: {prompt} tokens > "
                        f"{self.context_limit} maximum",
                    },
                },
            )
            return True
        if body.get("stream"):
            script = self._script_for(body)
        else:
            script = self.side_scripts.popleft() if self.side_scripts else Script()
        if script.close_connection:
            writer.transport.abort()
            return False
        if script.headers_delay:
            await asyncio.sleep(script.headers_delay)
        if script.status != 200:
            error_type = STATUS_ERROR_TYPES.get(script.status, "api_error")
            extra = {"retry-after": script.retry_after} if script.retry_after else {}
            await self._send_json(
                writer,
                script.status,
                {
                    "type": "error",
                    "error": {
                        "type": error_type,
                        "message": script.error_message or f"Fake gateway error {script.status}",
                    },
                },
                extra,
            )
            return True
        if script.json_error_200:
            await self._send_json(
                writer,
                200,
                {
                    "type": "error",
                    "error": {
                        "type": "overloaded_error",
                        "message": "Overloaded (HTTP 200 with an error body)",
                    },
                },
            )
            return True
        if not body.get("stream"):
            await self._send_json(writer, 200, self._whole_message(body, script))
            return True
        return await self._stream(record, body, script, reader, writer)

    def _script_for(self, body: dict[str, Any]) -> Script:
        if self.scripts:
            return self.scripts.popleft()
        for message in reversed(body.get("messages") or []):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return Script.from_directive(content) or Script()
                break
        return Script()

    def _reply_text(self, body: dict[str, Any], script: Script) -> str:
        if script.chunks is not None:
            return "".join(script.chunks)
        if script.text is not None:
            return script.text
        if script.words is not None:
            return numbered_words(script.words)
        return demo_reply(body)

    def _whole_message(self, body: dict[str, Any], script: Script) -> dict[str, Any]:
        # Non-streaming calls are title requests: answer with the question's first words.
        text = "".join(script.chunks) if script.chunks is not None else script.text
        if text is None:
            text = demo_title(body)
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", DEMO_MODEL),
            "content": [{"type": "text", "text": text}],
            "stop_reason": script.stop_reason,
            "stop_sequence": None,
            "usage": {
                **self._input_usage(body),
                "output_tokens": len(TOKEN.findall(text)),
            },
        }

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()  # ASCII: NULs and surrogates as JSON escapes
        head = [
            f"HTTP/1.1 {status} Fake",
            "content-type: application/json",
            f"content-length: {len(data)}",
        ]
        head += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()

    async def _stream(
        self,
        record: RecordedRequest,
        body: dict[str, Any],
        script: Script,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        # Notice at once when the client hangs up (a stop closes the response).
        gone = asyncio.Event()

        async def watch() -> None:
            with contextlib.suppress(Exception):
                await reader.read(1)
            record.disconnected_at = record.disconnected_at or time.monotonic()
            gone.set()

        watcher = asyncio.create_task(watch())

        def send(event: str, data: dict[str, Any] | str) -> None:
            payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            # A lone surrogate cannot be UTF-8: it goes as its JSON escape ("\ud800"), which
            # is what backslashreplace writes. Everything else is plain UTF-8.
            chunk = f"event: {event}\ndata: {payload}\n\n".encode("utf-8", "backslashreplace")
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")

        model = body.get("model", DEMO_MODEL)
        input_usage = self._input_usage(body)
        delay = self.token_delay if script.token_delay is None else script.token_delay
        if self.stamp:
            tokens: list[str] = []
        elif script.chunks is not None:
            tokens = list(script.chunks)
        else:
            tokens = TOKEN.findall(self._reply_text(body, script))
        if script.nul:
            tokens = [token + "\x00" for token in tokens]
        total = script.words if (self.stamp and script.words) else len(tokens)
        try:
            send(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": f"msg_{uuid.uuid4().hex[:24]}",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {**input_usage, "output_tokens": 1},
                    },
                },
            )
            index = 0
            if script.thinking:
                send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": ""},
                    },
                )
                for piece in TOKEN.findall(script.thinking):
                    send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "thinking_delta", "thinking": piece},
                        },
                    )
                    await self._pace(writer, delay, gone)
                send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": "c2ln"},
                    },
                )
                send("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            if script.unknown_block:
                send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "hologram", "data": {}},
                    },
                )
                send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "hologram_delta", "data": "x"},
                    },
                )
                send("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            send(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            send("ping", {"type": "ping"})
            await writer.drain()
            for n in range(total):
                if gone.is_set():
                    return False
                if script.cut_after is not None and n == script.cut_after:
                    writer.transport.abort()
                    return False
                if script.stall_after is not None and n == script.stall_after:
                    await asyncio.wait_for(gone.wait(), timeout=600)
                    return False
                if script.sse_error_after is not None and n == script.sse_error_after:
                    send(
                        "error",
                        {
                            "type": "error",
                            "error": {
                                "type": script.sse_error_type,
                                "message": "Fake mid-stream error",
                            },
                        },
                    )
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return True
                if script.malformed_after is not None and n == script.malformed_after:
                    send("content_block_delta", "{this is not json")
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return True
                if script.end_after is not None and n == script.end_after:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return True
                text = f"{time.monotonic_ns()} " if self.stamp else tokens[n]
                send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": text},
                    },
                )
                record.tokens_sent += 1
                await self._pace(writer, delay, gone)
            send("content_block_stop", {"type": "content_block_stop", "index": index})
            send(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": script.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": record.tokens_sent},
                },
            )
            send("message_stop", {"type": "message_stop"})
            # Marked before the last chunk goes out: a client that has read the whole
            # stream must find the record complete (setting it after the drain raced
            # with a fast reader on another thread).
            record.completed = True
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except (TimeoutError, ConnectionError):
            record.disconnected_at = record.disconnected_at or time.monotonic()
            return False
        finally:
            # Wait for the watcher to let go of the reader before the next request is read.
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def _input_usage(self, body: dict[str, Any]) -> dict[str, int]:
        """`usage`'s input fields: with a cache_control breakpoint, as Anthropic reports
        them, the prefix written to the cache the first time and read from it after (and
        `input_tokens` only what follows the prefix)."""
        total = count_tokens(body)
        prefix = cached_prefix(body)
        if prefix is None:
            return {"input_tokens": total}
        digest, cached = prefix
        seen = digest in self.cached_prefixes
        self.cached_prefixes.add(digest)
        return {
            "input_tokens": max(0, total - cached),
            "cache_read_input_tokens": cached if seen else 0,
            "cache_creation_input_tokens": 0 if seen else cached,
        }

    @staticmethod
    async def _pace(writer: asyncio.StreamWriter, delay: float, gone: asyncio.Event) -> None:
        await writer.drain()
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(gone.wait(), timeout=delay)
        else:
            await asyncio.sleep(0)


# The fake model's tokenizer: a word, a CJK character or any other visible character is
# one token. Deterministic and simple; the app's own estimate (conversations.tokens) is
# deliberately a different, more generous rule, as a real model's tokenizer would be.
FAKE_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]|[^\W_]+|[^\w\s]|_"
)
IMAGE_TOKENS = 1000


def _text_tokens(text: str) -> int:
    return len(FAKE_TOKEN.findall(text))


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    total = 0
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            total += _text_tokens(str(block.get("text", "")))
        elif block.get("type") in ("image", "document"):
            total += IMAGE_TOKENS
    return total


def _parts(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The prompt in order: (content, marked with cache_control) for the system prompt and
    each message."""
    parts: list[tuple[Any, bool]] = []
    system = body.get("system")
    if system:
        parts.append((system, _marked(system)))
    for message in body.get("messages") or []:
        content = message.get("content")
        parts.append((content, _marked(content)))
    return parts


def _marked(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("cache_control") for block in content
    )


def count_tokens(body: dict[str, Any]) -> int:
    """The prompt's tokens as this gateway counts them: its tokens plus 3 per message."""
    return max(1, sum(_content_tokens(content) + 3 for content, _ in _parts(body)))


def cached_prefix(body: dict[str, Any]) -> tuple[str, int] | None:
    """The prompt up to its last cache_control breakpoint: (its digest, its tokens)."""
    parts = _parts(body)
    last = max((i for i, (_, marked) in enumerate(parts) if marked), default=None)
    if last is None:
        return None
    prefix = [content for content, _ in parts[: last + 1]]
    digest = hashlib.sha256(json.dumps([body.get("model"), prefix]).encode()).hexdigest()
    return digest, sum(_content_tokens(content) + 3 for content in prefix)
