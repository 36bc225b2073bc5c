"""A conversation's messages as a tree of versions, and the thread it shows.

Each message has a parent (None for a first question). Versions of a message are its
siblings: the messages with the same parent and role (a regenerate adds a reply beside the
old one, an edit a question beside the old one). The conversation shows one thread, from
a root to its `shown_leaf`; each message remembers the child that was shown last under it
(`shown_child`; None means the newest), so switching back to a version shows the thread
that was below it, as ChatGPT does. Reads only: the writes are `services.threads`.

The tree's shape is read in one query of small columns (ids, roles), whatever the size
of the texts, and walked here; only the messages of the shown thread are read whole.
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
    public_id: UUID


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
    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes: dict[int, Node] = {}
        self.children: dict[int | None, list[int]] = {}
        for node in sorted(nodes, key=lambda n: n.id):
            self.add(node)

    def add(self, node: Node) -> None:
        """A message stored after the tree was read (ids grow: it is the newest child)."""
        self.nodes[node.id] = node
        self.children.setdefault(node.parent_id, []).append(node.id)

    def by_public_id(self, public_id: UUID) -> Node | None:
        for node in self.nodes.values():
            if node.public_id == public_id:
                return node
        return None

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
        result: list[Shown] = []
        for message_id in path:
            versions = self.versions(message_id)
            index = versions.index(message_id)
            parent_id = self.nodes[message_id].parent_id
            result.append(
                Shown(
                    message=messages[message_id],
                    parent_id=self.nodes[parent_id].public_id if parent_id is not None else None,
                    version=index + 1,
                    versions=len(versions),
                    previous_id=self.nodes[versions[index - 1]].public_id if index else None,
                    next_id=self.nodes[versions[index + 1]].public_id
                    if index + 1 < len(versions)
                    else None,
                )
            )
        return result


def load(conversation_id: int) -> Tree:
    rows = Message.objects.filter(conversation_id=conversation_id).values_list(
        "id", "parent_id", "shown_child_id", "role", "public_id"
    )
    return Tree(Node(*row) for row in rows)


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
