"""The tree of versions walked in memory: siblings, the thread shown below a message."""

from __future__ import annotations

from uuid import uuid4

from conversations.tree import Node, Tree


def shape(*nodes: tuple[int, int | None, str, int | None]) -> Tree:
    """(id, parent, role, shown_child) each."""
    return Tree(Node(i, parent, shown, role, uuid4()) for i, parent, role, shown in nodes)


# Q1 ─ A1 ─ Q2 ─ A2
#    └ A3          (a regenerated reply)
# Q4 ─ A4          (an edited first question and its reply)
TREE = [
    (1, None, "user", None),
    (2, 1, "assistant", None),
    (3, 2, "user", None),
    (4, 3, "assistant", None),
    (5, 1, "assistant", None),
    (6, None, "user", None),
    (7, 6, "assistant", None),
]


def test_versions_are_the_siblings_of_the_same_role_oldest_first() -> None:
    tree = shape(*TREE)
    assert tree.versions(2) == tree.versions(5) == [2, 5]
    assert tree.versions(1) == tree.versions(6) == [1, 6]
    assert tree.versions(3) == [3]


def test_below_a_message_the_newest_child_is_shown_unless_another_was_shown_last() -> None:
    tree = shape(*TREE)
    assert tree.descend(1) == 5  # A3 is newer than A1
    remembered = shape(*[(i, p, r, 2 if i == 1 else s) for i, p, r, s in TREE])
    assert remembered.descend(1) == 4  # A1 was shown last, and below it Q2, A2


def test_a_remembered_child_that_is_no_child_is_ignored() -> None:
    tree = shape(*[(i, p, r, 7 if i == 1 else s) for i, p, r, s in TREE])
    assert tree.shown_child(1) == 5


def test_a_path_runs_from_the_root_to_the_message() -> None:
    tree = shape(*TREE)
    assert tree.path(4) == [1, 2, 3, 4]
    assert tree.path(7) == [6, 7]
    assert tree.path(None) == []


def test_a_message_stored_later_is_the_newest_child() -> None:
    tree = shape(*TREE)
    tree.add(Node(8, 3, None, "assistant", uuid4()))
    assert tree.versions(8) == [4, 8] and tree.descend(3) == 8
