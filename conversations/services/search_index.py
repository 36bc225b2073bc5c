"""The search index's writes: entries for new messages and for a conversation's title."""

from __future__ import annotations

import logging

from conversations import rows
from conversations.models import Conversation, Message, SearchDocument
from conversations.search import segment

logger = logging.getLogger(__name__)


def index_new_messages(owner_id: int, messages: list[Message], title: str = "") -> None:
    """Index messages that have no search entry yet, and a first title, in one statement.

    A title entry that exists already (the conversation was renamed meanwhile) is kept.
    """
    documents = [
        SearchDocument(
            owner_id=owner_id,
            conversation_id=m.conversation_id,
            message_id=m.pk,
            body=segment(m.content),
        )
        for m in messages
        if m.content.strip()
    ]
    if title and messages:
        documents.append(
            SearchDocument(
                owner_id=owner_id,
                conversation_id=messages[0].conversation_id,
                message=None,
                body=segment(title),
            )
        )
    if documents:
        rows.insert(rows.database(), documents, ignore_conflicts=True)


def index_title(conversation: Conversation) -> None:
    """The conversation's title entry, replaced or created (one per conversation)."""
    db = rows.database()
    conversation_, message_ = (
        rows.column(db, SearchDocument, name) for name in ("conversation", "message")
    )
    where = f"WHERE {conversation_} = %s AND {message_} IS NULL"
    values = {"owner": conversation.owner_id, "body": segment(conversation.title)}
    # Twice at most: an entry inserted between the two statements is then updated.
    for _attempt in (1, 2):
        if rows.update(db, SearchDocument, values, where, [conversation.pk]):
            return
        document = SearchDocument(
            conversation_id=conversation.pk, owner_id=conversation.owner_id, body=values["body"]
        )
        if rows.insert(db, [document], ignore_conflicts=True):
            return
