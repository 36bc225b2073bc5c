"""Long conversations for the tests of issue 22: one thread of questions and replies, each
message following the one before, made in a few statements (a thousand turns through the
services would take most of a test's time; the messages are stored as the services leave
them: replies' HTML by the renderer-change service, search entries by the index service)."""

from __future__ import annotations

from typing import Any

from conversations import services
from conversations.models import Conversation, Message


def reply_text(n: int) -> str:
    """A reply as real ones are: a sentence, a list and a code block."""
    return (
        f"Reply {n}: here is how it works.\n\n- first point\n- second point\n\n"
        f"```python\ndef step_{n}():\n    return {n}\n```\n"
    )


def long_thread(owner: Any, count: int, *, title: str = "Long") -> Conversation:
    """A conversation whose shown thread is `count` messages: question 0, reply 1, ... Every
    reply's HTML is stored and every message is searchable (question n says "topic-n")."""
    conversation = services.conversations.create_conversation(owner)
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role="user" if n % 2 == 0 else "assistant",
                content=f"Question {n} about topic{n}" if n % 2 == 0 else reply_text(n),
            )
            for n in range(count)
        ],
        batch_size=500,
    )
    messages = list(conversation.messages.order_by("id"))
    for parent, message in zip([None, *messages], messages, strict=False):
        message.parent = parent
    Message.objects.bulk_update(messages, ["parent"], batch_size=500)
    Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=messages[-1])
    last = 0
    while (done := services.rendered.rerender_batch(last, 500))[1] is not None:
        last = done[1]
    services.search_index.index_new_messages(owner.pk, messages)
    conversation.refresh_from_db()
    return conversation


def thread_ids(conversation: Conversation) -> list[str]:
    """The public ids of the conversation's messages, oldest first (one thread here)."""
    return [
        str(p) for p in conversation.messages.order_by("id").values_list("public_id", flat=True)
    ]
