"""Stored turns and replies made through the services, with no gateway reached."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conversations import services
from conversations.models import Conversation, Message
from conversations.services.replies import Outcome


def keyed(user: Any) -> Any:
    # Turns are stored without reaching a gateway here: the address is never called.
    services.credentials.set_api_key(user, key="sk-test-search", base_url="http://127.0.0.1:9")
    return user


def exchange(user: Any, conversation: Conversation, question: str, answer: str) -> Message:
    """One stored turn through the services, as a finished reply leaves it. Returns the reply."""
    start = services.turns.start_turn(user, conversation, question)
    assert start.assistant_message is not None
    assert start.plan is not None
    # As the generation does: the turn's automatic title is indexed with the reply.
    services.replies.finish_reply(
        start.plan,
        Outcome(status=Message.Status.COMPLETE, content=answer, stop_reason="end_turn"),
    )
    return Message.objects.get(pk=start.assistant_message.pk)


def stored_thread(conversation: Conversation, *messages: dict[str, Any]) -> list[Message]:
    """Messages stored directly (no service, no gateway) as one thread, each following the
    one before, and shown: as the services leave a conversation."""
    stored: list[Message] = []
    for fields in messages:
        parent = stored[-1] if stored else None
        stored.append(conversation.messages.create(parent=parent, **fields))
    if stored:
        Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=stored[-1])
        conversation.shown_leaf = stored[-1]
    return stored


def record_reply(
    user: Any,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    at: datetime | None = None,
    conversation: Any = None,
    **cache: int | None,
) -> Message:
    """A question and a finished reply with the usage the gateway reported, `at` a given time."""
    conversation = conversation or services.conversations.create_conversation(user)
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="q"
    )
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content="a",
        model="hy3-preview",
        stop_reason="end_turn",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        **cache,
    )
    Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=reply)
    if at is not None:
        # created_at is auto_now_add: move it afterwards.
        Message.objects.filter(conversation=conversation).update(created_at=at)
    return reply
