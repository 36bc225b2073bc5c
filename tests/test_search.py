"""Searching one's conversations: titles and message bodies, Chinese and English, safely."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from conversations import search, services
from conversations.models import Conversation, Message, SearchDocument
from tests.conftest import signed_in
from tests.support.turns import exchange, keyed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limit(settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def chat(user: Any, question: str, answer: str = "OK.", title: str = "") -> Conversation:
    conversation = services.conversations.create_conversation(user)
    if title:
        services.conversations.rename_conversation(conversation, title)
    exchange(user, conversation, question, answer)
    conversation.refresh_from_db()
    return conversation


def found(user: Any, query: str) -> list[str]:
    return [hit.conversation.display_title for hit in search.search(user.pk, query)]


@pytest.fixture
def alice_keyed(alice: Any) -> Any:
    return keyed(alice)


@pytest.fixture
def bob_keyed(bob: Any) -> Any:
    return keyed(bob)


# --- What is found --------------------------------------------------------------------------
def test_it_finds_a_word_only_in_a_reply(alice_keyed):
    conversation = chat(alice_keyed, "Tell me about birds", "The quetzal lives in cloud forests.")
    reply = conversation.messages.get(role="assistant")
    [hit] = search.search(alice_keyed.pk, "quetzal")
    assert hit.conversation == conversation
    assert hit.message_id == str(reply.public_id)
    assert "<mark>quetzal</mark>" in hit.snippet


def test_it_finds_a_word_only_in_a_question(alice_keyed):
    conversation = chat(alice_keyed, "What does an axolotl eat?", "Worms.", title="Pets")
    [hit] = search.search(alice_keyed.pk, "axolotl")
    assert hit.message_id == str(conversation.messages.get(role="user").public_id)


def test_it_finds_titles(alice_keyed):
    conversation = chat(alice_keyed, "hello", "hi", title="Holiday planning for Lisbon")
    [hit] = search.search(alice_keyed.pk, "lisbon")
    assert hit.conversation == conversation
    assert hit.message_id is None
    assert hit.snippet == "Holiday planning for <mark>Lisbon</mark>"


def test_a_new_title_replaces_the_old_one_in_the_index(alice_keyed):
    conversation = chat(alice_keyed, "hello", "hi", title="Marmalade recipes")
    services.conversations.rename_conversation(conversation, "Jam recipes")
    assert found(alice_keyed, "marmalade") == []
    assert found(alice_keyed, "jam") == ["Jam recipes"]


def test_it_finds_only_the_users_own_conversations(alice_keyed, bob_keyed):
    chat(alice_keyed, "alice asks about the narwhal", title="Alice's")
    chat(bob_keyed, "bob asks about the narwhal", title="Bob's")
    assert found(alice_keyed, "narwhal") == ["Alice's"]
    assert found(bob_keyed, "narwhal") == ["Bob's"]
    response = signed_in(alice_keyed).get("/search/", {"q": "narwhal"})
    assert "Alice&#x27;s" in response.content.decode()
    assert "Bob" not in response.content.decode()


def test_only_the_text_is_searched_not_the_owner(alice_keyed, bob_keyed):
    chat(alice_keyed, "no numbers here", title="plain")
    chat(bob_keyed, "no numbers here either", title="plain too")
    for user in (alice_keyed, bob_keyed):
        assert found(user, str(user.pk)) == []
        assert found(user, f"here {user.pk}") == []


def test_every_word_must_match(alice_keyed):
    chat(alice_keyed, "red apples", title="both words")
    chat(alice_keyed, "red cars", title="one word")
    assert found(alice_keyed, "red apples") == ["both words"]


def test_each_conversation_appears_once_with_its_best_match(alice_keyed):
    conversation = services.conversations.create_conversation(alice_keyed)
    for i in range(3):
        exchange(alice_keyed, conversation, f"gnu question {i}", f"gnu answer {i}")
    assert len(search.search(alice_keyed.pk, "gnu")) == 1


def test_a_long_conversation_does_not_crowd_out_the_others(alice_keyed):
    busy = Conversation.objects.create(owner=alice_keyed, title="busy")
    rows = Message.objects.bulk_create(
        [
            Message(conversation=busy, role=Message.Role.USER, content="okapi okapi okapi")
            for _ in range(210)
        ]
    )
    SearchDocument.objects.bulk_create(
        [
            SearchDocument(
                owner=alice_keyed, conversation=busy, message=m, body=search.segment(m.content)
            )
            for m in rows
        ]
    )
    # One mention in a long text ranks below every message of the busy conversation.
    chat(alice_keyed, "okapi " + "filler words " * 200, title="quiet")
    assert sorted(found(alice_keyed, "okapi")) == ["busy", "quiet"]


def test_a_deleted_conversation_is_no_longer_found(alice_keyed):
    conversation = chat(alice_keyed, "the pangolin question")
    services.conversations.delete_conversation(conversation)
    assert found(alice_keyed, "pangolin") == []
    assert not SearchDocument.objects.exists()


# --- Snippets -------------------------------------------------------------------------------
def test_the_snippet_marks_every_match_and_escapes_the_text(alice_keyed):
    chat(alice_keyed, "hi", "<script>alert('wombat')</script> & a <b>wombat</b>")
    [hit] = search.search(alice_keyed.pk, "wombat")
    assert hit.snippet == (
        "&lt;script&gt;alert(&#x27;<mark>wombat</mark>&#x27;)&lt;/script&gt; &amp; a "
        "&lt;b&gt;<mark>wombat</mark>&lt;/b&gt;"
    )
    page = signed_in(alice_keyed).get("/search/", {"q": "wombat"}).content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;<mark>wombat</mark>" in page


def test_the_snippet_is_a_window_around_the_match(alice_keyed):
    chat(alice_keyed, "hi", "lorem " * 100 + "ibex " + "ipsum " * 100)
    [hit] = search.search(alice_keyed.pk, "ibex")
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…")
    assert "<mark>ibex</mark>" in hit.snippet
    assert len(hit.snippet) < 250


# --- Chinese --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("天气", ["weather"], id="word-inside-a-sentence"),
        pytest.param("今天", ["weather"], id="word-at-the-start"),
        pytest.param("很好", ["weather"], id="word-at-the-end"),
        pytest.param("天气很好", ["weather"], id="phrase"),
        pytest.param("天", ["weather"], id="single-character"),
        pytest.param("好", ["weather"], id="single-last-character"),
        pytest.param("的", ["weather"], id="single-middle-character"),
        pytest.param("天好", [], id="characters-not-adjacent"),
        pytest.param("明天", [], id="absent-word"),
    ],
)
def test_it_finds_chinese_inside_sentences(alice_keyed, query, expected):
    chat(alice_keyed, "今天的天气很好。", title="weather")
    assert found(alice_keyed, query) == expected


def test_it_highlights_chinese_in_the_original_text(alice_keyed):
    chat(alice_keyed, "你好", "今天的天气很好，我们去公园吧。")
    [hit] = search.search(alice_keyed.pk, "天气")
    assert hit.snippet == "今天的<mark>天气</mark>很好，我们去公园吧。"


@pytest.mark.parametrize("query", ["Python 编程", "python编程", "编程 PYTHON"])
def test_it_finds_mixed_chinese_and_english(alice_keyed, query):
    chat(alice_keyed, "我在学习Python编程。", title="mixed")
    chat(alice_keyed, "Python is a snake.", title="english only")
    chat(alice_keyed, "编程很有趣。", title="chinese only")
    assert found(alice_keyed, query) == ["mixed"]


def test_it_finds_a_single_character_run(alice_keyed):
    chat(alice_keyed, "A 猫 sat here.", title="cat")
    assert found(alice_keyed, "猫") == ["cat"]


# --- English --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Stemming: all forms of "run" meet (except irregular "ran").
        pytest.param("run", ["running", "runs"], id="stem-finds-longer-forms"),
        pytest.param("running", ["running", "runs"], id="stem-finds-shorter-forms"),
        pytest.param("runs", ["running", "runs"], id="stem-finds-siblings"),
        # The last word is also a prefix, for search-as-you-type, of the stems in the index:
        # "runn" finds nothing, as "running" is indexed as "run".
        pytest.param("ru", ["running", "runs"], id="prefix-of-the-last-word"),
        pytest.param("runn", [], id="prefix-longer-than-the-stem"),
        pytest.param("CAFE", ["cafe"], id="case-and-accents-ignored"),
    ],
)
def test_it_stems_english_words(alice_keyed, query, expected):
    chat(alice_keyed, "I was running late", title="running")
    chat(alice_keyed, "She runs every day", title="runs")
    chat(alice_keyed, "We ran out", title="ran")
    chat(alice_keyed, "Meet at the café", title="cafe")
    assert sorted(found(alice_keyed, query)) == expected


def test_only_the_last_word_is_a_prefix(alice_keyed):
    chat(alice_keyed, "programming languages", title="found")
    assert found(alice_keyed, "languages prog") == ["found"]
    assert found(alice_keyed, "prog languages") == []


def test_the_snippet_marks_the_typed_part_of_a_longer_word(alice_keyed):
    chat(alice_keyed, "I was running late")
    [hit] = search.search(alice_keyed.pk, "run")
    assert "<mark>run</mark>ning" in hit.snippet


# --- Hostile and odd queries ---------------------------------------------------------------
ODD_QUERIES = [
    '"',
    '""',
    "'",
    '"unterminated',
    "*",
    "run*",
    "-",
    "-run",
    "(",
    ")",
    "(run",
    "NEAR",
    "NEAR(run fast)",
    "AND",
    "run AND",
    "OR run",
    "NOT",
    "run NOT fast",
    ":",
    "body:run",
    "^run",
    "{body}: run",
    "run + fast",
    "a\x00b",
    "%_\\",
    "'; DROP TABLE conversations_message; --",
    "🙂",
    "   ",
    "\u200b",
]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_search_syntax_in_a_query_is_just_text(alice_keyed, query):
    chat(alice_keyed, "I run fast near the AND gate", title="target")
    response = signed_in(alice_keyed).get("/search/", {"q": query})
    assert response.status_code == 200
    hits = search.search(alice_keyed.pk, query)
    assert all(hit.conversation.title == "target" for hit in hits)
    assert Message.objects.count() == 2


@pytest.mark.parametrize("query", ["NEAR", "AND", "OR", "NOT"])
def test_operator_words_are_searched_as_words(alice_keyed, query):
    chat(alice_keyed, f"the word {query.lower()} is here", title="with")
    chat(alice_keyed, "something else", title="without")
    # PostgreSQL's English configuration drops stop words ("and", "or", "not") from texts
    # and queries alike: there such a query finds nothing, without an error.
    stop_word = connection.vendor == "postgresql" and query != "NEAR"
    assert found(alice_keyed, query) == ([] if stop_word else ["with"])


def test_a_ten_thousand_character_query_answers(alice_keyed):
    chat(alice_keyed, "alpha", title="target")
    client = signed_in(alice_keyed)
    response = client.get("/search/", {"q": ("alpha " * 2_000)[:10_000]})
    assert response.status_code == 200
    assert response.content.decode().count('class="result"') == 1
    response = client.get("/search/", {"q": "x" * 10_000})
    assert response.status_code == 200
    assert "Nothing matches" in response.content.decode()
    # Past the limit the form refuses the query instead of searching part of it.
    response = client.get("/search/", {"q": "y" * 10_001})
    assert response.status_code == 200


def test_many_words_are_capped(alice_keyed):
    chat(alice_keyed, "alpha", title="target")
    query = "alpha " + " ".join(f"w{i}" for i in range(500))
    assert len(search.terms(query)) == search.MAX_TERMS
    assert signed_in(alice_keyed).get("/search/", {"q": query}).status_code == 200


def test_an_empty_query_explains_what_to_do(alice_keyed):
    chat(alice_keyed, "alpha", title="target")
    for params in ({}, {"q": ""}, {"q": "   "}):
        response = signed_in(alice_keyed).get("/search/", params)
        assert response.status_code == 200
        page = response.content.decode()
        assert "Type words to find" in page
        assert 'class="result"' not in page


def test_no_match_says_so(alice_keyed):
    response = signed_in(alice_keyed).get("/search/", {"q": "zzzz"})
    assert "Nothing matches “zzzz”." in response.content.decode()


# --- The page -------------------------------------------------------------------------------
def test_the_page_has_the_layout_and_a_named_search_box(alice_keyed):
    conversation = chat(alice_keyed, "the kestrel hovers", title="Birds")
    page = signed_in(alice_keyed).get("/search/", {"q": "kestrel"}).content.decode()
    assert '<nav aria-label="Conversations"' in page
    assert '<label for="search-input"' in page and "Search conversations" in page
    assert 'value="kestrel"' in page
    message = conversation.messages.get(role="user")
    # Opening the hit shows the version that matched (see test_versions).
    assert f'href="/c/{conversation.public_id}/?at={message.public_id}"' in page


def test_the_fragment_is_only_the_results(alice_keyed):
    chat(alice_keyed, "the kestrel hovers", title="Birds")
    response = signed_in(alice_keyed).get("/search/", {"q": "kestrel", "fragment": "1"})
    assert response.status_code == 200
    body = response.content.decode().strip()
    assert body.startswith('<ol class="results">')
    assert "<html" not in body and "<nav" not in body and "<form" not in body
    assert "<mark>kestrel</mark>" in body


def test_search_needs_sign_in(db):
    response = Client().get("/search/", {"q": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.skipif(connection.vendor != "sqlite", reason="FTS5 is SQLite's")
def test_the_sqlite_index_stays_consistent(alice_keyed):
    conversation = chat(alice_keyed, "first", "reply", title="A title")
    services.conversations.rename_conversation(conversation, "Another title")
    exchange(alice_keyed, conversation, "second", "another reply")
    services.conversations.delete_conversation(chat(alice_keyed, "gone"))
    with connection.cursor() as cursor:
        # Raises if the FTS index and its content table disagree.
        cursor.execute(
            "INSERT INTO conversations_searchdocument_fts(conversations_searchdocument_fts) "
            "VALUES ('integrity-check')"
        )


def test_the_migration_reindexes_documents_of_the_older_segmentation(alice_keyed):
    from django.apps import apps

    migration = importlib.import_module("conversations.migrations.0003_resegment_search_documents")
    chat(alice_keyed, "今天的天气很好", "English only.", title="weather")
    # As indexed before: bigrams only, so the run's last character was not a token.
    for document in SearchDocument.objects.select_related("message", "conversation"):
        source = document.message.content if document.message else document.conversation.title
        old = search.CJK_RUN.sub(lambda m: f" {search._bigrams(m.group())} ", source)
        SearchDocument.objects.filter(pk=document.pk).update(body=old)
    assert found(alice_keyed, "好") == []
    migration.resegment(apps, None)
    assert found(alice_keyed, "好") == ["weather"]
    assert found(alice_keyed, "天气") == ["weather"]
