"""The one door to the gateway: requests, typed events and every failure mapped to a code,
a sentence and a retry decision. Through the real SDK against the fake gateway over real
HTTP; nothing of the SDK is mocked."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from conversations import upstream
from conversations.credentials import GatewayCredential
from conversations.demo.script import Script, numbered_words
from conversations.demo.server import FakeGateway
from conversations.upstream import Finished, Started, TextDelta, UpstreamError

MODEL = "hy3-preview"


def credential(gateway: FakeGateway, scheme: str = "bearer", key: str = "sk-up-1") -> Any:
    return GatewayCredential(
        base_url=gateway.base_url,
        scheme=scheme,
        key=key,
        default_model=MODEL,
        identity=f"test-{scheme}",
    )


def request(**fields: Any) -> upstream.TurnRequest:
    return upstream.TurnRequest(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=64,
        **fields,
    )


async def outcome(
    gateway: FakeGateway, scheme: str = "bearer", **fields: Any
) -> tuple[list[upstream.Event], UpstreamError | None]:
    """The events of one streamed reply, and the error that ended it (None when whole)."""
    events: list[upstream.Event] = []
    try:
        async for event in upstream.stream_reply(credential(gateway, scheme), request(**fields)):
            events.append(event)
    except UpstreamError as exc:
        return events, exc
    return events, None


def text_of(events: list[upstream.Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
def no_retries(settings: Any) -> None:
    settings.CHAT_UPSTREAM_RETRIES = 0


# --- A whole reply --------------------------------------------------------------------------
async def test_a_reply_streams_as_started_text_deltas_and_finished(gateway):
    gateway.enqueue(Script(text="Paris is the capital."))
    events, error = await outcome(gateway)
    assert error is None
    assert isinstance(events[0], Started) and events[0].model == MODEL
    assert text_of(events) == "Paris is the capital."
    assert events[-1] == Finished(
        stop_reason="end_turn", input_tokens=events[0].input_tokens, output_tokens=4
    )


async def test_a_streaming_request_accepts_an_event_stream_and_carries_the_sampling(gateway):
    gateway.enqueue(Script(text="OK."))
    await outcome(gateway, system="Be brief.", temperature=0.3, top_p=0.9)
    (sent,) = gateway.requests
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.body["stream"] is True
    assert sent.body["model"] == MODEL and sent.body["max_tokens"] == 64
    assert sent.body["system"] == "Be brief."
    assert (sent.body["temperature"], sent.body["top_p"]) == (0.3, 0.9)


async def test_without_sampling_the_body_leaves_it_to_the_model(gateway):
    gateway.enqueue(Script(text="OK."))
    await outcome(gateway)
    body = gateway.requests[0].body
    assert "temperature" not in body and "top_p" not in body and "system" not in body


async def test_the_bearer_scheme_sends_an_authorization_header_and_no_x_api_key(gateway):
    gateway.enqueue(Script(text="OK."))
    await outcome(gateway, scheme="bearer")
    headers = gateway.requests[0].headers
    assert headers["authorization"] == "Bearer sk-up-1"
    assert "x-api-key" not in headers


async def test_the_x_api_key_scheme_sends_x_api_key_and_no_authorization(gateway):
    gateway.enqueue(Script(text="OK."))
    await outcome(gateway, scheme="x-api-key")
    headers = gateway.requests[0].headers
    assert headers["x-api-key"] == "sk-up-1"
    assert "authorization" not in headers


async def test_a_title_is_one_request_that_does_not_stream(gateway):
    gateway.side_scripts.append(Script(text="Capital of France"))
    text = await upstream.complete_text(credential(gateway), request())
    assert text == "Capital of France"
    assert gateway.requests == [] and len(gateway.side_requests) == 1
    assert "stream" not in gateway.side_requests[0].body


# --- Statuses: a code, a sentence, and whether to try again -----------------------------------
STATUSES = [
    pytest.param(Script(status=401), "auth_failed", "did not accept the API key", False, id="401"),
    pytest.param(Script(status=403), "forbidden", "may not use this model", False, id="403"),
    pytest.param(Script(status=404), "model_not_found", f"the model “{MODEL}”", False, id="404"),
    pytest.param(Script(status=413), "request_too_large", "too long", False, id="413"),
    pytest.param(
        Script(status=400), "bad_request", "rejected the request. Fake gateway error 400", False
    ),
    pytest.param(Script(status=500), "upstream_error", "internal error (HTTP 500)", True, id="500"),
    pytest.param(Script(status=529), "overloaded", "overloaded", True, id="529"),
    pytest.param(Script(status=418), "upstream_error", "unexpected error (HTTP 418)", False),
    pytest.param(Script(status=429), "rate_limited", "Try again in a moment", False, id="429"),
    pytest.param(
        Script(status=429, retry_after="2"), "rate_limited", "in 2 seconds", True, id="429-short"
    ),
    pytest.param(
        Script(status=429, retry_after="30"), "rate_limited", "in 30 seconds", False, id="429-long"
    ),
]


@pytest.mark.parametrize(("script", "code", "sentence", "retryable"), STATUSES)
async def test_an_error_status_is_mapped_to_a_code_a_sentence_and_a_retry_decision(
    gateway, no_retries, script, code, sentence, retryable
):
    gateway.enqueue(script)
    events, error = await outcome(gateway)
    assert events == []
    assert error is not None
    assert (error.code, error.status_code, error.retryable) == (code, script.status, retryable)
    assert sentence in error.message


async def test_a_rate_limit_keeps_the_wait_the_gateway_asked_for(gateway, no_retries):
    gateway.enqueue(Script(status=429, retry_after="2"))
    _, error = await outcome(gateway)
    assert error is not None and error.retry_after == 2.0


async def test_a_retryable_failure_before_any_text_is_tried_again(gateway):
    gateway.enqueue(Script(status=500), Script(text="Second time lucky."))
    events, error = await outcome(gateway)
    assert error is None and text_of(events) == "Second time lucky."
    assert len(gateway.requests) == 2


async def test_a_failure_that_is_not_retryable_is_asked_once(gateway):
    gateway.enqueue(Script(status=401), Script(text="never asked"))
    _, error = await outcome(gateway)
    assert error is not None and error.code == "auth_failed"
    assert len(gateway.requests) == 1


async def test_a_200_with_a_json_error_body_is_mapped_by_its_error_type(gateway, no_retries):
    gateway.enqueue(Script(json_error_200=True))
    events, error = await outcome(gateway)
    assert events == []
    assert error is not None
    assert (error.code, error.status_code, error.retryable) == ("overloaded", 529, True)


# --- A stream that goes wrong -----------------------------------------------------------------
async def test_a_stream_ending_without_message_stop_is_an_incomplete_response(gateway):
    gateway.enqueue(Script(words=6, end_after=2))
    events, error = await outcome(gateway)
    assert text_of(events) == numbered_words(2)
    assert error is not None and error.code == "incomplete_response"
    # Text was shown: the partial reply stands, it is not asked for again.
    assert error.retryable is False and len(gateway.requests) == 1


async def test_a_stream_ending_before_any_text_may_be_tried_again(gateway, no_retries):
    gateway.enqueue(Script(words=6, end_after=0))
    events, error = await outcome(gateway)
    assert text_of(events) == ""
    assert error is not None and error.code == "incomplete_response" and error.retryable


async def test_a_cut_connection_mid_stream_is_an_interrupted_stream(gateway):
    gateway.enqueue(Script(words=6, cut_after=3))
    events, error = await outcome(gateway)
    assert text_of(events) == numbered_words(3)
    assert error is not None and error.code == "stream_interrupted" and not error.retryable


async def test_an_error_event_mid_stream_is_mapped_by_its_type_and_not_retried(gateway):
    gateway.enqueue(Script(words=6, sse_error_after=2, sse_error_type="rate_limit_error"))
    events, error = await outcome(gateway)
    assert text_of(events) == numbered_words(2)
    assert error is not None and error.code == "rate_limited" and not error.retryable


async def test_a_broken_event_is_a_malformed_response(gateway):
    gateway.enqueue(Script(words=6, malformed_after=1))
    _, error = await outcome(gateway)
    assert error is not None and error.code == "malformed_response"


async def test_an_unreachable_gateway_is_a_connection_failure(gateway, no_retries):
    gateway.enqueue(Script(close_connection=True))
    events, error = await outcome(gateway)
    assert events == []
    assert error is not None and error.code == "connection_failed" and error.retryable


# --- Failures that are not the gateway's answers ----------------------------------------------
@pytest.mark.parametrize(
    ("exc", "started", "code", "retryable"),
    [
        (httpx2.ConnectError("refused"), False, "connection_failed", True),
        (httpx2.ReadTimeout("slow"), False, "timeout", True),
        (httpx2.ReadTimeout("slow"), True, "stream_stalled", False),
        (httpx2.RemoteProtocolError("peer closed"), True, "stream_interrupted", False),
        (ValueError("not json"), False, "malformed_response", False),
        (RuntimeError("surprise"), False, "upstream_error", False),
    ],
)
def test_transport_errors_are_mapped_too(exc, started, code, retryable):
    mapped = upstream.map_error(exc, model=MODEL, started=started)
    assert (mapped.code, mapped.retryable) == (code, retryable)
    assert mapped.message


def test_an_upstream_error_is_passed_through_as_it_is():
    error = UpstreamError("timeout", "Too slow.", retryable=True)
    assert upstream.map_error(error, model=MODEL, started=True) is error


# --- Checking a key ----------------------------------------------------------------------------
def ticks(*values: float) -> Any:
    """A monotonic clock that reads `values` in turn."""
    readings = iter(values)
    return lambda: next(readings)


async def test_a_key_check_asks_for_one_token_and_says_how_long_the_model_took(gateway):
    gateway.side_scripts.append(Script(text="pong"))
    result = await upstream.check_key(credential(gateway, key="sk-check-1"), clock=ticks(10, 10.8))
    assert result.accepted and result.code is None
    assert result.message == f"The gateway accepted the key; model {MODEL} answered in 0.8 s."
    (sent,) = gateway.side_requests
    assert sent.body["max_tokens"] == 1 and sent.body["model"] == MODEL
    assert "stream" not in sent.body
    assert sent.headers["authorization"] == "Bearer sk-check-1"
    assert "sk-check-1" not in result.message


@pytest.mark.parametrize(
    ("status", "code", "sentence"),
    [
        (401, "auth_failed", "The gateway did not accept the API key."),
        (403, "forbidden", "This API key may not use this model or gateway."),
        (404, "model_not_found", f"The gateway does not offer the model “{MODEL}”."),
    ],
)
async def test_a_refused_key_check_says_why_in_words(gateway, status, code, sentence):
    gateway.side_scripts.append(Script(status=status))
    result = await upstream.check_key(credential(gateway, key="sk-check-2"))
    assert not result.accepted and result.code == code
    assert result.message.startswith("The check failed: " + sentence)
    assert "sk-check-2" not in result.message
    assert len(gateway.side_requests) == 1  # a check is not retried


async def test_a_200_with_an_error_body_fails_the_check(gateway):
    gateway.side_scripts.append(Script(json_error_200=True))
    result = await upstream.check_key(credential(gateway))
    assert not result.accepted and result.code == "overloaded"


async def test_a_key_check_of_an_unreachable_gateway_says_it_could_not_reach_it():
    unreachable = GatewayCredential(
        base_url="http://127.0.0.1:9", scheme="bearer", key="sk", default_model=MODEL
    )
    result = await upstream.check_key(unreachable)
    assert not result.accepted and result.code == "connection_failed"
    assert "Could not reach the gateway" in result.message


def test_the_cache_breakpoint_is_on_the_last_replayed_message_and_nothing_is_edited():
    history = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ]
    marked = upstream.cached_messages(history)
    assert marked[1]["content"] == [
        {"type": "text", "text": "answer", "cache_control": {"type": "ephemeral"}}
    ]
    assert marked[0] == history[0] and marked[2] == history[2]
    assert history[1] == {"role": "assistant", "content": "answer"}  # a copy was marked
    # Blocks (files with the text last): the last block carries it.
    blocks = [{"type": "image", "source": {}}, {"type": "text", "text": "look"}]
    marked = upstream.cached_messages([{"role": "user", "content": blocks}, history[2]])
    assert marked[0]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in blocks[-1]
    # A first message has no replayed history to mark.
    assert upstream.cached_messages(history[:1]) == history[:1]


@pytest.mark.parametrize(
    ("message", "stated"),
    [
        ("prompt is too long: 210000 tokens > 200000 maximum", (210_000, 200_000)),
        ("Input is too long for requested model.", None),
    ],
)
async def test_a_prompt_too_long_is_its_own_code_with_the_stated_limit(
    gateway: FakeGateway, message: str, stated: Any
):
    gateway.enqueue(Script(status=400, error_message=message))
    request = upstream.TurnRequest(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    with pytest.raises(UpstreamError) as failed:
        async for _ in upstream.stream_reply(credential(gateway), request):
            pass
    assert failed.value.code == "prompt_too_long" and failed.value.stated == stated
    assert len(gateway.requests) == 1  # not retried by the upstream layer itself
