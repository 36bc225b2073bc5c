"""The shown thread read a page at a time: what the chat page and its fragments send.

A conversation of 10,000 messages must open as fast as one of ten, so nothing here reads
the whole tree (`conversations.tree.load` does, for the writes that reshape it). A page is
found with one recursive query that walks the parents (up) or the shown children (down)
for at most a page of steps, its messages are read whole in one more, and where each one
stands among its versions comes from its siblings (one query: the children of the page's
parents). Every cost grows with the page, not with the conversation.

Cursors are message ids: the page before a message is its ancestors, which are the same
whatever is shown since; the page after one follows the children shown under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from django.db.models import Prefetch

from conversations import rows
from conversations.models import Attachment, Conversation, Message
from conversations.tree import Shown

# A screenful or two of messages: what a page opens with and each fetch adds.
PAGE_SIZE = 40


@dataclass(frozen=True)
class Page:
    """Consecutive messages of a thread, root side first."""

    shown: list[Shown] = field(default_factory=list)
    # The message just above the first (more to load upward), and whether more follow the
    # last (a page opened around a message, or a resync that missed more than a page).
    older_than: UUID | None = None
    newer_than: UUID | None = None


@dataclass(frozen=True)
class _Row:
    id: int
    parent_id: int | None
    public_id: UUID


def _walk_up(message_id: int, steps: int) -> list[_Row]:
    """A message and up to `steps - 1` of its ancestors, root side first."""
    db = rows.database()
    table = rows.table(db, Message)
    id_, parent_, public_id_ = (
        rows.column(db, Message, name) for name in ("id", "parent", "public_id")
    )
    found = rows.all_values(
        db,
        f"WITH RECURSIVE up(id, parent, depth) AS ("
        f"SELECT {id_}, {parent_}, 1 FROM {table} WHERE {id_} = %s "
        f"UNION ALL SELECT m.{id_}, m.{parent_}, up.depth + 1 FROM {table} m "
        f"JOIN up ON m.{id_} = up.parent WHERE up.depth < %s) "
        f"SELECT m.{id_}, m.{parent_}, m.{public_id_} FROM up JOIN {table} m ON m.{id_} = up.id "
        f"ORDER BY up.depth DESC",
        [message_id, steps],
    )
    return [_Row(row[0], row[1], _uuid(row[2])) for row in found]


def _walk_down(message_id: int, steps: int) -> list[_Row]:
    """Up to `steps` messages below one, each the child shown under the one before (the
    child it remembers, else its newest: as `tree.Tree.shown_child`)."""
    db = rows.database()
    table = rows.table(db, Message)
    id_, parent_, shown_, public_id_ = (
        rows.column(db, Message, name) for name in ("id", "parent", "shown_child", "public_id")
    )
    found = rows.all_values(
        db,
        f"WITH RECURSIVE down(id, shown, depth) AS ("
        f"SELECT {id_}, {shown_}, 0 FROM {table} WHERE {id_} = %s "
        f"UNION ALL SELECT c.{id_}, c.{shown_}, down.depth + 1 FROM {table} c "
        f"JOIN down ON c.{parent_} = down.id "
        f"WHERE down.depth < %s AND c.{id_} = COALESCE("
        f"(SELECT r.{id_} FROM {table} r WHERE r.{id_} = down.shown AND r.{parent_} = down.id), "
        f"(SELECT MAX(n.{id_}) FROM {table} n WHERE n.{parent_} = down.id))) "
        f"SELECT m.{id_}, m.{parent_}, m.{public_id_} FROM down JOIN {table} m ON m.{id_} = down.id "
        f"WHERE down.depth > 0 ORDER BY down.depth",
        [message_id, steps],
    )
    return [_Row(row[0], row[1], _uuid(row[2])) for row in found]


def _uuid(value: object) -> UUID:
    # SQLite hands back the 32 hex digits Django stores, PostgreSQL a UUID.
    return value if isinstance(value, UUID) else UUID(str(value))


def _shown(conversation_id: int, page: list[_Row], above: _Row | None) -> list[Shown]:
    """The page's messages read whole, each with its place among its versions."""
    if not page:
        return []
    files = Prefetch(
        "attachments",
        queryset=Attachment.objects.select_related("conversation").order_by("position", "id"),
    )
    messages = Message.objects.prefetch_related(files).in_bulk([row.id for row in page])
    public = {row.id: row.public_id for row in page}
    if above is not None:
        public[above.id] = above.public_id
    parents = {row.parent_id for row in page if row.parent_id is not None}
    # The versions of each message: its parent's children of its role (the roots, for a
    # first question). Children of a page's parents: about one per message.
    siblings = Message.objects.filter(parent_id__in=parents)
    if any(row.parent_id is None for row in page):
        siblings = siblings | Message.objects.filter(
            conversation_id=conversation_id, parent__isnull=True
        )
    versions: dict[tuple[int | None, str], list[tuple[int, UUID]]] = {}
    for id_, parent_id, role, public_id in siblings.order_by("id").values_list(
        "id", "parent_id", "role", "public_id"
    ):
        versions.setdefault((parent_id, role), []).append((id_, public_id))
    result: list[Shown] = []
    for row in page:
        message = messages[row.id]
        same = versions.get((row.parent_id, message.role)) or [(row.id, row.public_id)]
        index = next((i for i, (id_, _) in enumerate(same) if id_ == row.id), 0)
        result.append(
            Shown(
                message=message,
                parent_id=public.get(row.parent_id) if row.parent_id is not None else None,
                version=index + 1,
                versions=len(same),
                previous_id=same[index - 1][1] if index else None,
                next_id=same[index + 1][1] if index + 1 < len(same) else None,
            )
        )
    return result


def _page_up(conversation_id: int, rows_: list[_Row], size: int) -> Page:
    """A page from `_walk_up` rows read one further than `size` (that one says whether
    there are older messages, and is the parent of the page's first)."""
    above = rows_[0] if len(rows_) > size else None
    page = rows_[1:] if above is not None else rows_
    return Page(
        shown=_shown(conversation_id, page, above),
        older_than=page[0].public_id if above is not None and page else None,
    )


def newest(conversation: Conversation, size: int = PAGE_SIZE) -> Page:
    """The end of the shown thread: what the chat page opens with."""
    if conversation.shown_leaf_id is None:
        return Page()
    return _page_up(conversation.pk, _walk_up(conversation.shown_leaf_id, size + 1), size)


def _own_message(conversation: Conversation, public_id: UUID) -> int | None:
    return (
        Message.objects.filter(conversation=conversation, public_id=public_id)
        .values_list("id", flat=True)
        .first()
    )


def before(conversation: Conversation, public_id: UUID, size: int = PAGE_SIZE) -> Page | None:
    """The messages above one, a page of them (None: no such message here)."""
    message_id = _own_message(conversation, public_id)
    if message_id is None:
        return None
    # The message itself is read (it is the first row's child), then left out.
    found = _walk_up(message_id, size + 2)[:-1]
    return _page_up(conversation.pk, found, size)


def after(conversation: Conversation, public_id: UUID, size: int = PAGE_SIZE) -> Page | None:
    """The messages shown below one, a page of them (None: no such message here)."""
    message_id = _own_message(conversation, public_id)
    if message_id is None:
        return None
    found = _walk_down(message_id, size + 1)
    page = found[:size]
    above = _Row(message_id, None, _uuid(public_id))
    return Page(
        shown=_shown(conversation.pk, page, above),
        newer_than=page[-1].public_id if len(found) > size else None,
    )


def is_shown(conversation: Conversation, public_id: UUID) -> bool:
    """Whether a message is on the shown thread (an ancestor of the shown leaf, or it).

    Walks up from the leaf until it meets the message: ids only, in the database.
    """
    message_id = _own_message(conversation, public_id)
    if message_id is None or conversation.shown_leaf_id is None:
        return False
    db = rows.database()
    table = rows.table(db, Message)
    id_, parent_ = rows.column(db, Message, "id"), rows.column(db, Message, "parent")
    found = rows.all_values(
        db,
        f"WITH RECURSIVE up(id, parent) AS (SELECT {id_}, {parent_} FROM {table} WHERE {id_} = %s "
        f"UNION ALL SELECT m.{id_}, m.{parent_} FROM {table} m JOIN up ON m.{id_} = up.parent "
        f"WHERE up.id <> %s) SELECT 1 FROM up WHERE id = %s",
        [conversation.shown_leaf_id, message_id, message_id],
    )
    return bool(found)


def around(conversation: Conversation, public_id: UUID, size: int = PAGE_SIZE) -> Page | None:
    """A page with a message in its middle (a search hit, a link): it and what is above
    it, half a page, and half a page of what is shown below it. None unless it is on the shown thread."""
    if not is_shown(conversation, public_id):
        return None
    message_id = _own_message(conversation, public_id)
    assert message_id is not None
    up = _page_up(conversation.pk, _walk_up(message_id, size // 2 + 1), size // 2)
    down = after(conversation, public_id, size - size // 2)
    assert down is not None
    return Page(shown=up.shown + down.shown, older_than=up.older_than, newer_than=down.newer_than)


def tail(conversation: Conversation, public_id: UUID, size: int = PAGE_SIZE) -> Page | None:
    """What a page that shows the thread down to a message lacks: the messages below it to
    the end of the shown thread. None if it is not on the shown thread any more, or if more
    than a page follows it (the page then starts over from `newest`)."""
    if conversation.shown_leaf_id is None:
        return None
    found = _walk_up(conversation.shown_leaf_id, size + 1)
    ids = [row.public_id for row in found]
    public_id = _uuid(public_id)
    if public_id not in ids:
        return None
    index = ids.index(public_id)
    return Page(shown=_shown(conversation.pk, found[index + 1 :], found[index]))
