"""The offline demo gateway: its script language, its answers, and its HTTP side."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from conversations.demo.script import Script, demo_reply, demo_title, numbered_words
from conversations.demo.server import FakeGateway


# --- The script language ----------------------------------------------------------------------
def test_a_message_without_a_directive_has_no_script():
    assert Script.from_directive("What is the capital of France?") is None


def test_a_directive_gives_each_setting_its_type():
    script = Script.from_directive(
        "before [[fake status=429 retry_after=3 token_delay=0.05 words=12 nul]] after"
    )
    assert script == Script(status=429, retry_after="3", token_delay=0.05, words=12, nul=True)
    assert isinstance(script.status, int) and isinstance(script.token_delay, float)


@pytest.mark.parametrize(
    ("raw", "value"), [("", True), ("1", True), ("true", True), ("yes", True), ("false", False)]
)
def test_a_flag_is_on_when_named_alone_or_set_to_a_yes(raw, value):
    directive = "[[fake json_error_200]]" if raw == "" else f"[[fake json_error_200={raw}]]"
    assert Script.from_directive(directive).json_error_200 is value


def test_underscores_in_a_text_are_spaces_and_unknown_settings_are_ignored():
    script = Script.from_directive("[[fake text=Hello_there colour=blue stop_reason=max_tokens]]")
    assert script == Script(text="Hello there", stop_reason="max_tokens")


def test_numbered_words_count_from_one():
    assert numbered_words(3) == "w1 w2 w3"
    assert numbered_words(0) == ""


# --- The demo's own answers -------------------------------------------------------------------
def body(*messages: Any) -> dict[str, Any]:
    return {"messages": list(messages)}


def test_the_demo_reply_quotes_the_last_question_without_its_directive():
    reply = demo_reply(
        body(
            {"role": "user", "content": "First?"},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "[[fake token_delay=0.1]] Second question?"},
        )
    )
    assert "You wrote: “Second question?”" in reply
    assert "First?" not in reply and "[[fake" not in reply
    assert "It is turn 2 of this conversation" in reply


def test_the_demo_reply_shortens_a_long_question_and_reads_content_blocks():
    long = "x" * 200
    assert f"“{'x' * 117}...”" in demo_reply(body({"role": "user", "content": long}))
    blocks = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "blocks"}]
    assert "“Hello blocks”" in demo_reply(body({"role": "user", "content": blocks}))


def test_the_demo_title_is_the_first_five_words_of_the_question():
    prompt = "User: [[fake words=3]] How do I keep sourdough starter alive?\n\nAssistant: ..."
    assert demo_title(body({"role": "user", "content": prompt})) == (
        "Demo: How do I keep sourdough"
    )
    assert demo_title(body()) == "Demo conversation"


# --- Over real HTTP ---------------------------------------------------------------------------
def post(gateway: FakeGateway, payload: dict[str, Any] | bytes, path: str = "/v1/messages"):
    connection = http.client.HTTPConnection(gateway.host, gateway.port, timeout=5)
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    connection.request("POST", path, body=data, headers={"content-type": "application/json"})
    return connection, connection.getresponse()


STREAM = {
    "model": "m",
    "max_tokens": 5,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def test_a_status_script_answers_with_an_anthropic_style_error_body(gateway):
    gateway.enqueue(Script(status=429, retry_after="3"))
    connection, response = post(gateway, STREAM)
    assert response.status == 429
    assert response.getheader("retry-after") == "3"
    assert json.loads(response.read()) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Fake gateway error 429"},
    }
    connection.close()


def test_an_unknown_route_and_a_body_that_is_not_json_are_refused(gateway):
    connection, response = post(gateway, STREAM, path="/v1/other")
    assert response.status == 404
    assert json.loads(response.read())["error"]["type"] == "not_found_error"
    connection.close()
    connection, response = post(gateway, b"{not json")
    assert response.status == 400
    assert json.loads(response.read())["error"]["type"] == "invalid_request_error"
    connection.close()
    assert gateway.requests == []


def test_a_cut_script_closes_the_connection_mid_stream(gateway):
    gateway.enqueue(Script(words=10, cut_after=2))
    connection, response = post(gateway, STREAM)
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream"
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        response.read()
    connection.close()
    (record,) = gateway.requests
    assert record.tokens_sent == 2 and not record.completed


def test_a_whole_stream_ends_with_message_stop_and_counts_its_tokens(gateway):
    gateway.enqueue(Script(words=3))
    connection, response = post(gateway, STREAM)
    events = [
        line.removeprefix("event: ")
        for line in response.read().decode().splitlines()
        if line.startswith("event: ")
    ]
    connection.close()
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_delta") == 3
    (record,) = gateway.requests
    assert record.tokens_sent == 3 and record.completed


def test_the_demo_reply_says_which_files_it_was_sent():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": ""},
                    },
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": ""},
                    },
                    {"type": "text", "text": "File: data.csv\n\na,b"},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ]
    }
    reply = demo_reply(body)
    assert "You attached 1 image(s) and 1 PDF document(s) and the file(s) `data.csv`" in reply
    assert "What is this?" in reply


def test_a_script_of_chunks_streams_exactly_those_deltas(gateway):
    # Tests of the page choose where a delta ends: `<scr` in one, `ipt>` in the next.
    gateway.enqueue(Script(chunks=["Hello <scr", "ipt>x</scr", "ipt>\n\n", "  end"]))
    connection, response = post(gateway, STREAM)
    texts = [
        json.loads(line.removeprefix("data: "))["delta"]["text"]
        for line in response.read().decode().splitlines()
        if line.startswith("data: ") and '"text_delta"' in line
    ]
    connection.close()
    assert texts == ["Hello <scr", "ipt>x</scr", "ipt>\n\n", "  end"]
    assert gateway.requests[0].tokens_sent == 4


def test_chunks_cannot_be_given_in_a_directive():
    assert Script.from_directive("[[fake chunks=a|b words=2]]") == Script(words=2)
