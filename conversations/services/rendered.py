"""Stored HTML of replies: rendered again after a renderer change.

A final reply's HTML is rendered once, in the event loop, and saved with it
(`services.replies.finish_reply`); pages only read it. When `rendering.VERSION` goes up
(new sanitiser rules, a new highlighter), `manage.py rerender_messages` calls this module
batch by batch. Each batch is its own transaction and takes the rows of an older version
(0: never rendered, such as replies a dead process left), so the command can be stopped
and started again: it goes on where it stopped, and nothing is rendered twice.
"""

from __future__ import annotations

from django.db import models, transaction

from conversations import rendering
from conversations.models import Message


def stale() -> models.QuerySet[Message]:
    """Final replies whose stored HTML is missing or of an older renderer."""
    return (
        Message.objects.filter(role=Message.Role.ASSISTANT)
        .exclude(status=Message.Status.STREAMING)
        .exclude(html_version=rendering.VERSION)
    )


def rerender_batch(after_id: int, size: int) -> tuple[int, int | None]:
    """Render again up to `size` stale replies with ids above `after_id`. Returns how many,
    and the last id (None when there were none: the work is done)."""
    batch = list(stale().filter(pk__gt=after_id).order_by("pk").only("pk", "content")[:size])
    if not batch:
        return 0, None
    for message in batch:
        message.html = rendering.render_markdown(message.content)
        message.html_version = rendering.VERSION
    with transaction.atomic():
        # A reply saved meanwhile was rendered by the new code already; a content change of
        # the same row (none exists today: a final reply is never edited) would win anyway,
        # because only rows still of an older version are written.
        for message in batch:
            Message.objects.filter(pk=message.pk).exclude(html_version=rendering.VERSION).update(
                html=message.html, html_version=message.html_version
            )
    return len(batch), batch[-1].pk
