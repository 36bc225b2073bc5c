"""The one door to the gateway: the only module that imports the SDK.

It keeps one `AsyncAnthropic` client per credential (connection reuse), always passes the
credential explicitly, streams the reply as small typed events, and turns every failure
(SDK errors *and* raw transport errors of a cut stream) into an `UpstreamError` with a
stable code and a sentence a person understands.

Every text the gateway sends (deltas, titles, model names, stop reasons, error details)
leaves this module cleaned by `conversations.text.clean`: the page is shown, a snapshot
holds and the database stores the same text, whichever database it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
from django.conf import settings
from django.utils.translation import gettext as _

from conversations import context
from conversations.credentials import GatewayCredential
from conversations.text import clean

# Words of a gateway's 400 that is about an attachment (Anthropic's, CloudBase's, in English).
ATTACHMENT_WORDS = re.compile(r"\b(image|images|document|pdf|media[_ ]type|base64)\b", re.I)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnRequest:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    system: str = ""
    temperature: float | None = None
    top_p: float | None = None
    # Prompt caching: `cache_control` on the system prompt and the last replayed message.
    cache: bool = False


# --- Events streamed to the caller ------------------------------------------------------
@dataclass(frozen=True)
class Started:
    model: str
    input_tokens: int | None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    stop_reason: str
    input_tokens: int | None
    output_tokens: int | None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


Event = Started | TextDelta | ThinkingDelta | Finished


class UpstreamError(Exception):
    """A failure talking to the gateway, with a stable `code` and a sentence for people."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        stated: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable
        # A prompt refused as too long: (tokens it counted, its limit), when it said them.
        self.stated = stated


# --- Clients ------------------------------------------------------------------------------
# identity -> (fingerprint, event loop, client). A client's connection pool belongs to the
# loop that opened it; a client is never handed to another loop (tests run one per test).
_clients: dict[str, tuple[str, asyncio.AbstractEventLoop | None, anthropic.AsyncAnthropic]] = {}


def _timeout() -> httpx2.Timeout:
    # `read` bounds every wait for bytes: the wait for the first one and every stall later.
    return httpx2.Timeout(
        connect=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT,
        read=settings.CHAT_UPSTREAM_READ_TIMEOUT,
        write=30.0,
        pool=30.0,
    )


def client_for(credential: GatewayCredential) -> anthropic.AsyncAnthropic:
    """The cached client of this credential; a changed key or URL gets a fresh one."""
    loop = _running_loop()
    cached = _clients.get(credential.identity)
    if cached is not None and cached[0] == credential.fingerprint and cached[1] is loop:
        return cached[2]
    client = _new_client(credential)
    _clients[credential.identity] = (credential.fingerprint, loop, client)
    if cached is not None and cached[1] is loop:
        _close_later(cached[2])
    return client


def _new_client(credential: GatewayCredential) -> anthropic.AsyncAnthropic:
    # Explicit credential only: the SDK then never consults ANTHROPIC_* variables or profiles.
    auth: dict[str, Any] = {"auth_token": credential.key}
    if credential.scheme == "x-api-key":
        # This SDK sends even `api_key` as a Bearer token; Anthropic-style gateways want the
        # key in `x-api-key` and no Authorization header at all.
        auth = {
            "api_key": credential.key,
            "default_headers": {"X-Api-Key": credential.key, "Authorization": anthropic.omit},
        }
    return anthropic.AsyncAnthropic(
        base_url=credential.base_url,
        timeout=_timeout(),
        # Retries are ours: only before the first token, and never on a 429 that asks for long.
        max_retries=0,
        **auth,
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close_later(client: anthropic.AsyncAnthropic) -> None:
    # A stream still running on the old client keeps its connection until it ends.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(300, lambda: loop.create_task(client.close()))


def forget_clients() -> None:
    """Drop every cached client (tests; after credentials are rotated)."""
    _clients.clear()


async def close_clients() -> None:
    """Close every cached client and its connections (shutdown; the end of a test)."""
    loop = asyncio.get_running_loop()
    clients = [client for _, owner, client in _clients.values() if owner is loop]
    _clients.clear()
    for client in clients:
        await client.close()


# --- Streaming ----------------------------------------------------------------------------
async def stream_reply(credential: GatewayCredential, request: TurnRequest) -> AsyncIterator[Event]:
    """Stream one reply. Retries happen only while nothing has been yielded yet.

    Raises `UpstreamError` for every failure. Closing the generator (or cancelling the
    task iterating it) closes the HTTP response at once.
    """
    attempt = 0
    while True:
        yielded = False
        try:
            async for event in _one_attempt(credential, request):
                yielded = yielded or isinstance(event, TextDelta | ThinkingDelta)
                yield event
            return
        except UpstreamError as exc:
            if yielded or not exc.retryable or attempt >= settings.CHAT_UPSTREAM_RETRIES:
                raise
            attempt += 1
            delay = exc.retry_after if exc.retry_after is not None else _backoff(attempt)
            logger.info(
                "Retrying upstream after %s (attempt %d) in %.1fs", exc.code, attempt, delay
            )
            await asyncio.sleep(delay)


def _backoff(attempt: int) -> float:
    return settings.CHAT_UPSTREAM_RETRY_BACKOFF * (2 ** (attempt - 1))


async def _one_attempt(credential: GatewayCredential, request: TurnRequest) -> AsyncIterator[Event]:
    client = client_for(credential)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": cached_messages(request.messages) if request.cache else request.messages,
        "max_tokens": request.max_tokens,
    }
    if request.system:
        params["system"] = (
            [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
            if request.cache
            else request.system
        )
    # This SDK release no longer takes sampling parameters as arguments, but CloudBase and
    # Anthropic's API still accept them in the body.
    sampling = {
        name: value
        for name, value in (("temperature", request.temperature), ("top_p", request.top_p))
        if value is not None
    }
    if sampling:
        params["extra_body"] = sampling
    try:
        # CloudBase cuts a stream after 60 s unless the request accepts an event stream.
        stream = await client.messages.create(
            **params, stream=True, extra_headers={"Accept": "text/event-stream"}
        )
    except Exception as exc:
        raise map_error(exc, model=request.model, started=False) from None

    started = False
    finished = False
    try:
        content_type = stream.response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            # Some gateways answer 200 with a JSON error body instead of a stream.
            body = await stream.response.aread()
            raise _error_from_body(body, model=request.model)
        input_tokens: int | None = None
        cache_read: int | None = None
        cache_write: int | None = None
        pending_finish: Finished | None = None
        async for event in stream:
            kind = getattr(event, "type", None)
            if kind == "content_block_delta":
                delta = event.delta
                delta_type = getattr(delta, "type", None)
                # A delta that was only a NUL is cleaned to nothing and not sent at all.
                if delta_type == "text_delta" and delta.text:
                    started = True
                    if text := clean(delta.text):
                        yield TextDelta(text)
                elif delta_type == "thinking_delta" and getattr(delta, "thinking", ""):
                    started = True
                    if thinking := clean(delta.thinking):
                        yield ThinkingDelta(thinking)
                # Signatures, tool input and unknown delta types are not shown.
            elif kind == "message_start":
                message = event.message
                usage = getattr(message, "usage", None)
                input_tokens = getattr(usage, "input_tokens", None)
                cache_read = getattr(usage, "cache_read_input_tokens", None)
                cache_write = getattr(usage, "cache_creation_input_tokens", None)
                yield Started(
                    model=clean(getattr(message, "model", "") or request.model),
                    input_tokens=input_tokens,
                    cache_read_input_tokens=cache_read,
                    cache_creation_input_tokens=cache_write,
                )
            elif kind == "message_delta":
                usage = getattr(event, "usage", None)
                stop_reason = clean(getattr(event.delta, "stop_reason", None) or "")
                output_tokens = getattr(usage, "output_tokens", None)
                usage_input = getattr(usage, "input_tokens", None)
                pending_finish = Finished(
                    stop_reason=stop_reason,
                    input_tokens=usage_input if usage_input is not None else input_tokens,
                    output_tokens=output_tokens,
                    cache_read_input_tokens=_either(usage, "cache_read_input_tokens", cache_read),
                    cache_creation_input_tokens=_either(
                        usage, "cache_creation_input_tokens", cache_write
                    ),
                )
                input_tokens = pending_finish.input_tokens
            elif kind == "message_stop":
                finished = True
                yield pending_finish or Finished("", input_tokens, None)
                return
            # content_block_start/stop, ping and unknown event types carry nothing to show.
    except UpstreamError:
        raise
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception as exc:
        raise map_error(exc, model=request.model, started=started) from None
    finally:
        await stream.close()
    if not finished:
        raise UpstreamError(
            "incomplete_response",
            _("The gateway ended the reply before finishing it. The partial reply is kept."),
            retryable=not started,
        )


EPHEMERAL = {"type": "ephemeral"}


def cached_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with a cache breakpoint at the end of the replayed history (the last
    message before the new one): the gateway caches the prefix up to it, and the next turn,
    which replays the same prefix and more, reads it from the cache. Copies, never edits."""
    if len(messages) < 2:
        return messages
    marked = list(messages)
    target = dict(marked[-2])
    content = target.get("content")
    if isinstance(content, str):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    else:
        blocks = [dict(block) for block in content or []]
    if not blocks:
        return messages
    blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    target["content"] = blocks
    marked[-2] = target
    return marked


def _either(usage: Any, name: str, earlier: int | None) -> int | None:
    value = getattr(usage, name, None)
    return value if value is not None else earlier


async def complete_text(
    credential: GatewayCredential, request: TurnRequest, *, timeout: float = 20.0
) -> str:
    """A short non-streaming answer (conversation titles). Raises `UpstreamError`."""
    client = client_for(credential)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
    }
    if request.system:
        params["system"] = request.system
    try:
        message = await client.messages.create(**params, timeout=timeout)
    except Exception as exc:
        raise map_error(exc, model=request.model, started=False) from None
    return clean(
        "".join(
            getattr(block, "text", "")
            for block in message.content
            if getattr(block, "type", "") == "text"
        )
    )


# --- Checking a key -----------------------------------------------------------------------
@dataclass(frozen=True)
class KeyCheck:
    """What the gateway said to the cheapest request a key can make: `message` is a
    sentence for an administrator; `code` is None when the key was accepted."""

    accepted: bool
    message: str
    code: str | None = None
    model: str = ""
    seconds: float | None = None


CHECK_TIMEOUT = 20.0


async def check_key(
    credential: GatewayCredential, *, clock: Callable[[], float] = time.monotonic
) -> KeyCheck:
    """Ask the gateway for one output token of the credential's default model.

    The Messages API has no free request that proves a key (the models list and token
    counting are not offered by every gateway, CloudBase among them), so the cheapest is
    the smallest answer: a one-word question, `max_tokens=1`, not streamed. A fresh client,
    closed afterwards: a check runs from the admin or a command, outside any turn's loop.
    `clock` (monotonic seconds) is for tests.
    """
    now = clock
    model = credential.default_model
    client = _new_client(credential)
    started = now()
    try:
        message = await client.messages.create(
            model=model,
            max_tokens=1,
            messages=[{"role": "user", "content": "ping"}],
            timeout=CHECK_TIMEOUT,
        )
        if getattr(message, "type", "message") != "message":
            # CloudBase may answer 200 with an error body, which the SDK reads as a message.
            raise _error_from_body(json.dumps(message.model_dump()).encode(), model=model)
    except Exception as exc:
        error = map_error(exc, model=model, started=False)
        return KeyCheck(
            accepted=False,
            code=error.code,
            message=_("The check failed: %(reason)s") % {"reason": error.message},
        )
    finally:
        await client.close()
    seconds = now() - started
    answered = clean(getattr(message, "model", "") or model)
    return KeyCheck(
        accepted=True,
        model=answered,
        seconds=seconds,
        message=_("The gateway accepted the key; model %(model)s answered in %(seconds)s s.")
        % {"model": answered, "seconds": f"{seconds:.1f}"},
    )


# --- Error mapping ------------------------------------------------------------------------
_ERROR_TYPES = {
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "request_too_large": 413,
    "invalid_request_error": 400,
    "api_error": 500,
    "overloaded_error": 529,
}


def _error_from_body(body: bytes, *, model: str) -> UpstreamError:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return UpstreamError(
            "malformed_response", _("The gateway sent a response this app cannot read.")
        )
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        status = _ERROR_TYPES.get(str(error.get("type")), 502)
        return _for_status(status, model=model, detail=clean(str(error.get("message", ""))[:300]))
    return UpstreamError(
        "malformed_response", _("The gateway sent a response this app cannot read.")
    )


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _for_status(
    status: int, *, model: str, detail: str = "", retry_after: float | None = None
) -> UpstreamError:
    if status == 401:
        return UpstreamError(
            "auth_failed",
            _(
                "The gateway did not accept the API key. Ask your administrator to check or replace it."
            ),
            status_code=status,
        )
    if status == 403:
        return UpstreamError(
            "forbidden",
            _("This API key may not use this model or gateway. Ask your administrator for access."),
            status_code=status,
        )
    if status == 404:
        return UpstreamError(
            "model_not_found",
            _(
                "The gateway does not offer the model “%(model)s”. Choose another model in the settings."
            )
            % {"model": model},
            status_code=status,
        )
    if status == 429:
        if retry_after is not None:
            text = _("The gateway is limiting requests. Try again in %(seconds)d seconds.") % {
                "seconds": max(1, round(retry_after))
            }
        else:
            text = _("The gateway is limiting requests. Try again in a moment.")
        # A short wait is worth retrying for; a long one is the person's decision.
        short = retry_after is not None and retry_after <= 2
        return UpstreamError(
            "rate_limited", text, status_code=status, retry_after=retry_after, retryable=short
        )
    if status in (400, 413, 422) and detail and context.is_too_long(detail):
        # Before the first token, the generation leaves out more and tries once again.
        return UpstreamError(
            "prompt_too_long",
            _(
                "This conversation is too long for the model, even with its oldest messages "
                "left out. Start a new chat, or edit an earlier message."
            ),
            status_code=status,
            stated=context.stated_limit(detail),
        )
    if status == 413:
        return UpstreamError(
            "request_too_large",
            _(
                "This conversation is too long for the model. Start a new chat or edit an earlier message."
            ),
            status_code=status,
        )
    if status == 529:
        return UpstreamError(
            "overloaded",
            _("The model is overloaded right now. Try again in a minute."),
            status_code=status,
            retryable=True,
        )
    if status >= 500:
        return UpstreamError(
            "upstream_error",
            _("The gateway had an internal error (HTTP %(status)d). Try again.")
            % {"status": status},
            status_code=status,
            retryable=True,
        )
    if status in (400, 422) and detail and ATTACHMENT_WORDS.search(detail):
        # A model that takes no images or PDFs, an image it cannot read, a document too
        # long: said about the file, not as a broken request.
        return UpstreamError(
            "attachment_refused",
            _(
                "The gateway refused an attached file: %(detail)s Remove it, or ask an "
                "administrator whether this model takes images and PDFs."
            )
            % {"detail": detail},
            status_code=status,
        )
    if status in (400, 422):
        text = _("The gateway rejected the request.")
        if detail:
            text = f"{text} {detail}"
        return UpstreamError("bad_request", text, status_code=status)
    return UpstreamError(
        "upstream_error",
        _("The gateway answered with an unexpected error (HTTP %(status)d).") % {"status": status},
        status_code=status,
    )


def map_error(exc: BaseException, *, model: str, started: bool) -> UpstreamError:
    """Turn any exception raised while talking to the gateway into an `UpstreamError`."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else None
        status = exc.status_code
        detail = ""
        if error is not None:
            detail = clean(str(error.get("message", ""))[:300])
            # An SSE `error` event arrives inside a 200 response: its type tells the cause.
            if status < 400:
                status = _ERROR_TYPES.get(str(error.get("type")), 502)
        elif status < 400:
            status = 502
        mapped = _for_status(
            status, model=model, detail=detail, retry_after=_retry_after(exc.response.headers)
        )
        mapped.retryable = mapped.retryable and not started
        return mapped
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        if started:
            return UpstreamError(
                "stream_stalled",
                _(
                    "The gateway stopped sending for %(seconds)d seconds, so the reply was ended. "
                    "The partial reply is kept."
                )
                % {"seconds": round(settings.CHAT_UPSTREAM_READ_TIMEOUT)},
            )
        return UpstreamError(
            "timeout", _("The gateway did not answer in time. Try again."), retryable=True
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.ConnectError):
        return UpstreamError(
            "connection_failed",
            _(
                "Could not reach the gateway. Try again, or ask your administrator to check the address."
            ),
            retryable=not started,
        )
    if isinstance(exc, httpx2.TransportError | httpx2.StreamError):
        return UpstreamError(
            "stream_interrupted",
            _(
                "The connection to the gateway was cut before the reply finished. The partial reply is kept."
            ),
            retryable=not started,
        )
    if isinstance(exc, ValueError | anthropic.APIResponseValidationError):
        return UpstreamError(
            "malformed_response", _("The gateway sent a response this app cannot read.")
        )
    logger.exception("Unexpected error from the gateway client")
    return UpstreamError(
        "upstream_error", _("Something went wrong talking to the gateway. Try again.")
    )
