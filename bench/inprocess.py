"""Scenarios that need no server: history replay, the conversation list and search.

They run in the orchestrator process against the benchmark database, count the statements
the database receives (`connection.execute_wrapper`) and time with `perf_counter` (median of
several calls after one warm-up call, so caches and imports are not what is measured). "Server time" is the time
of the whole request through Django's test client: middleware, session, view, template.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import environment

REPLAY_SIZES = (10, 100, 1000, 2000)
LIST_SIZES = (100, 1000, 10_000)
MESSAGES_PER_CONVERSATION = 20  # 10,000 conversations -> 200,000 messages
TIMED_CALLS = 7
RARE_WORD = "needle"  # in about 1% of messages
VOCABULARY = 2000


def timed(call: Callable[[], Any]) -> tuple[float, int]:
    """Median milliseconds of `call` and the number of queries of one call."""
    from django.db import connection

    statements = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # Below the ORM and independent of DEBUG and of the query log (which a request
        # resets when it starts): every statement the database receives.
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    call()
    with connection.execute_wrapper(count):
        call()
    samples = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), statements


class Text:
    """Made-up prose: pronounceable words with a Zipf-like frequency, as in real text, so a
    common word matches many messages and a rare one few. Sentences come from a pool, which
    keeps 200,000 messages cheap to make without changing the word statistics."""

    POOL = 20_000

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "der", "po", "lun", "ste", "ga"]
        words = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(9000)})
        rng.shuffle(words)
        self.words = words[:VOCABULARY]
        weights = list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))
        self.pool = [
            " ".join(rng.choices(self.words, cum_weights=weights, k=rng.randint(12, 60)))
            for _ in range(self.POOL)
        ]
        self.rng = rng
        self.count = 0

    @property
    def common_word(self) -> str:
        # Rank 5 of the distribution: in a large share of messages.
        return self.words[4]

    def sentence(self) -> str:
        self.count += 1
        text = self.pool[self.rng.randrange(self.POOL)]
        if self.count % 100 == 0:
            return f"{text} {RARE_WORD} {self.pool[self.rng.randrange(self.POOL)]}"
        return text


def insert_rows(model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """INSERT rows (database values by attribute name) with one `executemany`; their ids.

    The ORM's bulk_create spends ~0.2 ms per row preparing values: minutes for the 400,000
    rows of the 10,000-conversation owner. Every column not given here gets the value the
    ORM stores for a new instance (computed once), so the rows are the same as
    bulk_create's. Only the orchestrator writes while this runs (no server is up), so ids
    can be assigned here.
    """
    from django.db import connection
    from django.db.models import Max

    fields = [f for f in model._meta.concrete_fields if f.attname != "id"]
    template = model()
    defaults = {
        f.attname: f.get_db_prep_save(f.pre_save(template, True), connection) for f in fields
    }
    first = (model.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    names = [f.attname for f in fields]
    values = [
        (first + offset, *(row.get(name, defaults[name]) for name in names))
        for offset, row in enumerate(rows)
    ]
    columns = ", ".join(connection.ops.quote_name(c) for c in ["id", *(f.column for f in fields)])
    marks = ", ".join(["%s"] * (len(fields) + 1))
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
    return list(range(first, first + len(rows)))


def uuid_value() -> Any:
    """A new UUID as the database stores it (SQLite: 32 hex characters)."""
    from django.db import connection

    value = uuid.uuid4()
    return value if connection.features.has_native_uuid_field else value.hex


def add_messages(conversations: list[Any], per_conversation: int, text: Text) -> None:
    """Stored messages and their search documents, as the services would have left them."""
    from django.db import transaction
    from django.test.utils import override_settings

    from conversations.models import Message

    # DEBUG logs every statement, and for SQLite quotes every parameter of an executemany
    # with extra queries: slower than the inserts, and not what is measured.
    with override_settings(DEBUG=False), transaction.atomic():
        for start in range(0, len(conversations), 500):
            chunk = conversations[start : start + 500]
            rows = [
                {
                    "conversation_id": conversation.pk,
                    "public_id": uuid_value(),
                    "role": Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
                    "content": text.sentence(),
                }
                for conversation in chunk
                for i in range(per_conversation)
            ]
            ids = insert_rows(Message, rows)
            index_for_search(chunk, ids, rows)


def index_for_search(conversations: list[Any], ids: list[int], rows: list[dict[str, Any]]) -> None:
    """Search documents as `services` writes them for each stored message and title."""
    try:
        from conversations.models import SearchDocument
        from conversations.search import segment
    except ImportError:
        return  # no search in this version of the app
    owners = {c.pk: c.owner_id for c in conversations}
    documents = [
        {
            "owner_id": owners[row["conversation_id"]],
            "conversation_id": row["conversation_id"],
            "message_id": message_id,
            "body": segment(row["content"]),
        }
        for message_id, row in zip(ids, rows, strict=True)
    ]
    documents += [
        {
            "owner_id": c.owner_id,
            "conversation_id": c.pk,
            "message_id": None,
            "body": segment(c.title),
        }
        for c in conversations
        if c.title
    ]
    insert_rows(SearchDocument, documents)


# --- 4. History replay --------------------------------------------------------------------
def history_replay() -> dict[str, Any]:
    from conversations import services
    from conversations.models import Conversation, Message

    text = Text(4)
    user = environment.make_user("bench-replay")
    out: dict[str, Any] = {}
    for size in REPLAY_SIZES:
        conversation = Conversation.objects.create(owner=user, title=f"replay {size}")
        add_messages([conversation], size, text)
        # One thread: each message follows the one before it (the tree of versions).
        ids = list(conversation.messages.order_by("id").values_list("id", flat=True))
        Message.objects.bulk_update(
            [Message(pk=m, parent_id=p) for p, m in zip([None, *ids], ids, strict=False)],
            ["parent"],
            batch_size=500,
        )
        # As for a new reply: everything stored so far is history.
        ms, queries = timed(lambda last=ids[-1]: services.turns.load_history(last))
        sent = len(services.turns.load_history(ids[-1]))
        out[str(size)] = {"ms": ms, "queries": queries, "messages_sent": sent}
    return out


# --- 5. Lists and search ------------------------------------------------------------------
def owner_with(count: int, text: Text) -> Any:
    from django.test.utils import override_settings

    from conversations.models import Conversation

    user = environment.make_user(f"bench-list-{count}")
    with override_settings(DEBUG=False):
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(owner=user, title=" ".join(text.sentence().split()[:4]))
                for _ in range(count)
            ],
            batch_size=1000,
        )
    add_messages(conversations, MESSAGES_PER_CONVERSATION, text)
    return user


def search_url() -> str | None:
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse("search")
    except NoReverseMatch:
        return None


def measure_search(client: Any, url: str | None, word: str) -> dict[str, Any]:
    if url is None:
        return {"skipped": "no URL named `search` yet"}
    probe = client.get(url, {"q": word})
    if probe.status_code == 404:
        return {"skipped": f"GET {url}?q= answers 404"}
    ms, queries = timed(lambda: client.get(url, {"q": word}))
    return {"url": url, "q": word, "status": probe.status_code, "ms": ms, "queries": queries}


def match_share(owner: Any, word: str) -> float:
    """The share of the owner's messages that contain `word` as a word."""
    from conversations.models import Message

    contents = Message.objects.filter(conversation__owner=owner).values_list("content", flat=True)
    total = hits = 0
    for content in contents.iterator(chunk_size=5000):
        total += 1
        hits += word in content.split()
    return hits / total if total else 0.0


def lists_and_search() -> dict[str, Any]:
    from django.test import Client

    text = Text(5)
    out: dict[str, Any] = {}
    for count in LIST_SIZES:
        user = owner_with(count, text)
        # The test client's default host is not in ALLOWED_HOSTS outside the test runner.
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        status = client.get("/").status_code
        ms, queries = timed(lambda c=client: c.get("/"))
        url = search_url()
        out[str(count)] = {
            "conversations": count,
            "messages": count * MESSAGES_PER_CONVERSATION,
            "list": {"url": "/", "status": status, "ms": ms, "queries": queries},
            "search_rare": measure_search(client, url, RARE_WORD),
            "search_common": {
                **measure_search(client, url, text.common_word),
                "share_of_messages": match_share(user, text.common_word),
            },
        }
    return out


# --- 6. Opening a long conversation (issue 22) --------------------------------------------
OPEN_SIZES = (100, 1000, 10_000)


def long_reply(n: int) -> str:
    """A reply as real ones are: a paragraph, a list and a code block."""
    return (
        f"Here is how step {n} works, with **emphasis** and `inline code`:\n\n"
        "1. read the input\n2. check each item\n3. sum the sizes\n\n"
        f"```python\ndef step_{n}(items):\n    total = 0\n    for item in items:\n"
        "        total += item.size\n    return total\n```\n"
    )


def long_conversation(user: Any, size: int) -> Any:
    """One thread of `size` messages (questions and replies in turn), each following the one
    before; replies' HTML stored by the renderer-change service, as after the migration."""
    from django.db import transaction
    from django.test.utils import override_settings

    from conversations import services
    from conversations.models import Conversation, Message

    conversation = Conversation.objects.create(owner=user, title=f"long {size}")
    with override_settings(DEBUG=False), transaction.atomic():
        Message.objects.bulk_create(
            [
                Message(
                    conversation=conversation,
                    role="user" if i % 2 == 0 else "assistant",
                    content=f"Question {i}: how does step {i} work?"
                    if i % 2 == 0
                    else long_reply(i),
                    model="" if i % 2 == 0 else "bench-model",
                )
                for i in range(size)
            ],
            batch_size=1000,
        )
        ids = list(conversation.messages.order_by("id").values_list("id", flat=True))
        Message.objects.bulk_update(
            [Message(pk=m, parent_id=p) for p, m in zip([None, *ids], ids, strict=False)],
            ["parent"],
            batch_size=1000,
        )
        Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=ids[-1])
    last = 0
    while (batch := services.rendered.rerender_batch(last, 1000))[1] is not None:
        last = batch[1]
    return conversation


def open_long() -> dict[str, Any]:
    """Server time (median) and size of the chat page of a conversation of 100, 1,000 and
    10,000 messages, and of the fragment a scroll up fetches."""
    from django.test import Client

    from conversations import services
    from conversations.services import events

    # The frames a service sends after commit go to the caller's outbox, as under
    # `events.call` in production (sent later from the event loop, not timed here).
    events._outbox.set([])
    user = environment.make_user("bench-long")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    out: dict[str, Any] = {}
    for size in OPEN_SIZES:
        conversation = long_conversation(user, size)
        url = f"/c/{conversation.public_id}/"
        response = client.get(url)
        ms, queries = timed(lambda u=url: client.get(u))
        first = conversation.messages.order_by("-id").values_list("public_id", flat=True)[40]
        older = f"/c/{conversation.public_id}/messages/?before={first}"
        fragment = client.get(older)
        older_ms, older_queries = timed(lambda u=older: client.get(u))
        # A switch (Previous version / Next version) to the newest question, in the
        # database thread: reads the tree's shape, writes what changes, reads the
        # thread frame's newest page.
        question = conversation.messages.filter(role="user").order_by("-id")[0].public_id
        switch_ms, switch_queries = timed(
            lambda c=conversation, q=question: services.threads.switch(c, q)
        )
        out[str(size)] = {
            "messages": size,
            "status": response.status_code,
            "ms": ms,
            "queries": queries,
            "bytes": len(response.content),
            "articles": response.content.decode().count("<article "),
            "older_page": {
                "status": fragment.status_code,
                "ms": older_ms,
                "queries": older_queries,
                "bytes": len(fragment.content),
            },
            "switch": {"ms": switch_ms, "queries": switch_queries},
        }
    return out
