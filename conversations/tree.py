"""A conversation's messages as a tree of versions, and the thread it shows.

Each message has a parent (None for a first question). Versions of a message are its
siblings: the messages with the same parent and role (a regenerate adds a reply beside the
old one, an edit a question beside the old one). The conversation shows one thread, from
a root to its `shown_leaf`; each message remembers the child that was shown last under it
(`shown_child`; None means the newest), so switching back to a version shows the thread
that was below it, as ChatGPT does. Reads only: the writes are `services.threads`.

The tree's shape is read in one query of small columns (ids, roles), whatever the size
of the texts, and walked here; only the messages of the shown thread are read whole.
Public ids are read only for the messages a caller names (`public_id`, `public_ids`):
turning every row's id into a `UUID` was most of the read (at 10,000 messages on
SQLite, 23 ms of a 32 ms query against 10 ms without them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.db.models import Prefetch

from conversations.models import Attachment, Conversation, Message


@dataclass
class Node:
    id: int
    parent_id: int | None
    shown_child_id: int | None
    role: str
    public_id: UUID | None = None  # None until read (`Tree.public_ids`)


@dataclass(frozen=True)
class Shown:
    """A message of a shown thread, with where it stands among its versions."""

    message: Message
    parent_id: UUID | None
    version: int  # from 1, in the order the versions were made
    versions: int
    previous_id: UUID | None  # the version before it, if any
    next_id: UUID | None  # the version after it, if any


class Tree:
    def __init__(self, nodes: Iterable[Node], conversation_id: int | None = None) -> None:
        self.conversation_id = conversation_id
        self.nodes: dict[int, Node] = {}
        self.children: dict[int | None, list[int]] = {}
        for node in sorted(nodes, key=lambda n: n.id):
            self.add(node)

    def add(self, node: Node) -> None:
        """A message stored after the tree was read (ids grow: it is the newest child)."""
        self.nodes[node.id] = node
        self.children.setdefault(node.parent_id, []).append(node.id)

    def by_public_id(self, public_id: UUID) -> Node | None:
        """The message of the tree with this public id (None: not in this conversation)."""
        found = Message.objects.filter(
            conversation_id=self.conversation_id, public_id=public_id
        ).values_list("id", flat=True)
        node = self.nodes.get(next(iter(found), None))  # type: ignore[arg-type]
        if node is not None:
            node.public_id = public_id
        return node

    def public_ids(self, message_ids: Iterable[int]) -> list[UUID]:
        """The public ids of these messages of the tree, in order (one query for those not
        read yet)."""
        ids = list(message_ids)
        missing = [m for m in ids if self.nodes[m].public_id is None]
        if missing:
            for message_id, public_id in Message.objects.filter(pk__in=missing).values_list(
                "id", "public_id"
            ):
                self.nodes[message_id].public_id = public_id
        return [self.nodes[m].public_id for m in ids]  # type: ignore[misc]

    def public_id(self, message_id: int) -> UUID:
        return self.public_ids([message_id])[0]

    def shown_child(self, message_id: int) -> int | None:
        """The child shown under a message: the one it remembers, else the newest."""
        children = self.children.get(message_id)
        if not children:
            return None
        remembered = self.nodes[message_id].shown_child_id
        return remembered if remembered in children else children[-1]

    def descend(self, message_id: int) -> int:
        """The leaf of the thread last shown below a message."""
        while (child := self.shown_child(message_id)) is not None:
            message_id = child
        return message_id

    def path(self, message_id: int | None) -> list[int]:
        """A message and its ancestors, root first ([] for None)."""
        path: list[int] = []
        while message_id is not None and message_id in self.nodes:
            path.append(message_id)
            message_id = self.nodes[message_id].parent_id
        path.reverse()
        return path

    def versions(self, message_id: int) -> list[int]:
        """A message and its siblings of the same role, oldest first."""
        node = self.nodes[message_id]
        return [
            sibling
            for sibling in self.children.get(node.parent_id, [])
            if self.nodes[sibling].role == node.role
        ]

    def shown(self, path: list[int]) -> list[Shown]:
        """The messages of a thread, read whole, with their places among their versions."""
        # Their attachments in one more query, with the conversation their URLs name.
        files = Prefetch(
            "attachments",
            queryset=Attachment.objects.select_related("conversation").order_by("position", "id"),
        )
        messages = Message.objects.prefetch_related(files).in_bulk(path)
        for message_id, message in messages.items():
            self.nodes[message_id].public_id = message.public_id
        parents = [self.nodes[m].parent_id for m in path]
        # The other public ids the frames carry (parents, versions beside): one query.
        self.public_ids(
            {p for p in parents if p is not None} | {v for m in path for v in self.versions(m)}
        )
        result: list[Shown] = []
        for message_id, parent_id in zip(path, parents, strict=True):
            versions = self.versions(message_id)
            index = versions.index(message_id)
            result.append(
                Shown(
                    message=messages[message_id],
                    parent_id=self.public_id(parent_id) if parent_id is not None else None,
                    version=index + 1,
                    versions=len(versions),
                    previous_id=self.public_id(versions[index - 1]) if index else None,
                    next_id=self.public_id(versions[index + 1])
                    if index + 1 < len(versions)
                    else None,
                )
            )
        return result


def load(conversation_id: int) -> Tree:
    """The conversation's tree, without its public ids (read as they are asked for)."""
    rows = (
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("id")
        .values_list("id", "parent_id", "shown_child_id", "role")
    )
    return Tree((Node(*row) for row in rows), conversation_id)


def shown_thread(conversation: Conversation) -> list[Shown]:
    """The thread the conversation shows, root first (what the page renders)."""
    tree = load(conversation.pk)
    return tree.shown(tree.path(conversation.shown_leaf_id))


def every_version(conversation: Conversation) -> tuple[list[Message], set[int]]:
    """Every message of the conversation, oldest first, and the ids of the shown thread."""
    messages = list(conversation.messages.order_by("id"))
    parents = {m.pk: m.parent_id for m in messages}
    shown: set[int] = set()
    message_id = conversation.shown_leaf_id
    while message_id is not None and message_id in parents:
        shown.add(message_id)
        message_id = parents[message_id]
    return messages, shown
