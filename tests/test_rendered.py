"""Stored HTML of replies (services/rendered.py) and `manage.py rerender_messages`: a
renderer change reaches every stored reply, batch by batch, resumably, with its progress
on stderr; pages show the stored HTML and never render a stored reply themselves."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command

from conversations import rendering, services
from conversations.models import Message
from tests.conftest import signed_in
from tests.support.long import long_thread

pytestmark = pytest.mark.django_db


def new_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renderer change as a release makes one, after replies were stored: a sanitiser
    rule (bold is dropped, its text kept) and the version raised with it."""
    monkeypatch.setattr(rendering, "ALLOWED_TAGS", rendering.ALLOWED_TAGS - {"strong"})
    monkeypatch.setattr(rendering, "VERSION", rendering.VERSION + 1)


def bold_replies(owner: Any, count: int) -> list[Message]:
    conversation = long_thread(owner, count * 2)
    replies = list(conversation.messages.filter(role="assistant").order_by("id"))
    for reply in replies:
        reply.content = f"**Bold {reply.pk}** text"
        reply.html = rendering.render_markdown(reply.content)
    Message.objects.bulk_update(replies, ["content", "html"])
    return replies


def rerender(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rerender_messages", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_stored_replies_hold_the_html_of_the_current_renderer(alice: Any) -> None:
    replies = bold_replies(alice, 3)
    stored = Message.objects.get(pk=replies[0].pk)
    assert "<strong>" in stored.html and stored.html_version == rendering.VERSION
    # Questions are shown as text: nothing to render.
    assert not Message.objects.filter(role="user").exclude(html="").exists()


def test_a_renderer_change_reaches_every_reply_with_a_progress_bar(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = bold_replies(alice, 7)
    new_renderer(monkeypatch)

    out, err = rerender("--batch-size", "3")

    assert "Rendered 7 replies again" in out
    # One line per batch on a non-terminal: 0, 3, 6, then all 7 of 7.
    assert err.splitlines()[0].startswith("[------") and "0/7 replies" in err
    assert "[##############################] 7/7 replies" in err
    for reply in Message.objects.filter(pk__in=[r.pk for r in replies]):
        assert reply.html_version == rendering.VERSION
        assert "<strong>" not in reply.html and f"Bold {reply.pk}" in reply.html


def test_the_command_goes_on_where_it_stopped(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bold_replies(alice, 5)
    new_renderer(monkeypatch)
    # Stopped after its first batch of two (a deploy interrupted it).
    count, last = services.rendered.rerender_batch(0, 2)
    assert count == 2 and last is not None

    out, _ = rerender()

    assert "Rendered 3 replies again" in out
    assert not services.rendered.stale().exists()
    assert "Rendered 0 replies again" in rerender()[0]


def test_pages_show_the_stored_html_without_rendering_again(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = bold_replies(alice, 2)
    new_renderer(monkeypatch)
    conversation = replies[0].conversation
    client = signed_in(alice)

    # Before the command: the HTML stored by the older renderer (bold still there)...
    before = client.get(f"/c/{conversation.public_id}/").content.decode()
    assert f"<strong>Bold {replies[-1].pk}</strong>" in before
    rerender()
    # ... after it, the new one; the page never rendered the Markdown itself.
    after = client.get(f"/c/{conversation.public_id}/").content.decode()
    assert f"<strong>Bold {replies[-1].pk}</strong>" not in after
    assert f"Bold {replies[-1].pk} text" in after
