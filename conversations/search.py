"""Full-text search over a person's conversations: titles and message bodies.

Full-text tokenizers do not split Chinese (a whole sentence is one "word" to them), so
text is segmented before indexing: every run of CJK characters becomes its overlapping
bigrams and its last character ("今天天气" -> "今天 天天 天气 气"), and a query's CJK run
becomes the phrase of its bigrams, which matches the word anywhere inside a sentence; a
single character is a prefix query (it starts a bigram, or it ends its run). Latin words
go through the database's own tokenizer (FTS5 `porter unicode61` on SQLite, `english` on
PostgreSQL).

The index is found with one query; snippets come from the original text, not the
segmented one, so they read naturally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from uuid import UUID

from django.db import connection
from django.utils.safestring import SafeString, mark_safe

from conversations.models import Conversation

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
CJK_RUN = re.compile(f"[{CJK}]+")
# A search term: a run of CJK characters, or a word of letters and digits.
TERM = re.compile(f"[{CJK}]+|[^\\W_{CJK}]+", re.UNICODE)
MAX_QUERY_CHARS = 200
MAX_TERMS = 12
MAX_CONVERSATIONS = 50
# Matches ranked per search: the newest ones. Older matches of a very common word are
# found by a more specific query.
CANDIDATES = 2000


def _bigrams(run: str) -> str:
    if len(run) == 1:
        return run
    return " ".join(run[i : i + 2] for i in range(len(run) - 1))


def _indexed_run(run: str) -> str:
    # The last character on its own too, so a one-character query finds it at a run's end.
    return run if len(run) == 1 else f"{_bigrams(run)} {run[-1]}"


def segment(text: str) -> str:
    """Text as the index sees it: CJK runs spaced out into bigrams and their last
    character, the rest unchanged."""
    return CJK_RUN.sub(lambda m: f" {_indexed_run(m.group())} ", text)


def terms(query: str) -> list[str]:
    """The search terms of a query. Everything but letters, digits and CJK is dropped, so
    full-text syntax (quotes, operators, parentheses) in a query is never interpreted."""
    return TERM.findall(query[:MAX_QUERY_CHARS])[:MAX_TERMS]


# conversation id, message id (None: the title matched), message public id, message text
Row = tuple[int, int | None, str | None, str | None]


@dataclass(frozen=True)
class Hit:
    conversation: Conversation
    snippet: SafeString
    message_id: str | None


def search(user_id: int, query: str) -> list[Hit]:
    found = terms(query)
    if not found:
        return []
    ranked = (
        _search_sqlite(user_id, found)
        if connection.vendor == "sqlite"
        else _search_postgres(user_id, found)
    )
    # The best hit of each conversation, in rank order (the query keeps one per conversation
    # and brings the matched message's text along: two queries whatever the hits are).
    best: dict[int, tuple[str | None, str | None]] = {}
    for conversation_id, _message_id, message_public_id, content in ranked:
        best.setdefault(conversation_id, (message_public_id, content))
    conversations = Conversation.objects.in_bulk(list(best))
    hits = []
    for conversation_id, (message_public_id, content) in best.items():
        conversation = conversations.get(conversation_id)
        if conversation is None:
            continue
        source = content if content is not None else conversation.display_title
        message_id = str(UUID(str(message_public_id))) if message_public_id else None
        hits.append(Hit(conversation, highlight(source, found), message_id))
    return hits


def _search_sqlite(user_id: int, found: list[str]) -> list[Row]:
    # Each term is a quoted FTS5 string (a CJK term: the phrase of its bigrams; the last
    # Latin term also matches as a prefix, for search-as-you-type).
    parts = []
    for index, term in enumerate(found):
        if CJK_RUN.fullmatch(term):
            parts.append('"' + _bigrams(term) + '"' + ("*" if len(term) == 1 else ""))
        else:
            prefix = "*" if index == len(found) - 1 else ""
            parts.append(f'"{term}"{prefix}')
    # Terms match only the text; the owner is matched inside the index too, so FTS5
    # intersects posting lists instead of scoring every user's matches.
    match = f'{{owner_id}} : "{int(user_id)}" AND {{body}} : (' + " AND ".join(parts) + ")"
    # Rank only the newest CANDIDATES matches (FTS5 walks rowids in order, so a common word
    # costs no more than a rare one), then keep the best document of each conversation, so
    # one long conversation cannot push every other past the limit.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT r.conversation_id, r.message_id, m.public_id, m.content FROM (
                SELECT d.conversation_id, d.message_id, c.score,
                    ROW_NUMBER() OVER (
                        PARTITION BY d.conversation_id ORDER BY c.score, d.id DESC
                    ) AS n
                FROM (
                    SELECT rowid AS id, rank AS score FROM conversations_searchdocument_fts
                    WHERE conversations_searchdocument_fts MATCH %s
                    ORDER BY rowid DESC LIMIT %s
                ) AS c
                JOIN conversations_searchdocument d ON d.id = c.id
                WHERE d.owner_id = %s
            ) AS r
            LEFT JOIN conversations_message m ON m.id = r.message_id
            WHERE r.n = 1
            ORDER BY r.score
            LIMIT %s
            """,
            [match, CANDIDATES, user_id, MAX_CONVERSATIONS],
        )
        return list(cursor.fetchall())


def _search_postgres(user_id: int, found: list[str]) -> list[Row]:
    clauses = []
    params: list[object] = []
    for index, term in enumerate(found):
        if CJK_RUN.fullmatch(term) and len(term) == 1:
            # As on SQLite: the character starts a bigram or ends its run.
            clauses.append("to_tsquery('english', %s)")
            params.append(f"{term}:*")
        elif CJK_RUN.fullmatch(term):
            clauses.append("phraseto_tsquery('english', %s)")
            params.append(_bigrams(term))
        elif index == len(found) - 1:
            # Prefix match on the last word; the term holds only letters and digits.
            clauses.append("to_tsquery('english', %s)")
            params.append(f"{term}:*")
        else:
            clauses.append("plainto_tsquery('english', %s)")
            params.append(term)
    tsquery = " && ".join(clauses)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT ranked.conversation_id, ranked.message_id, m.public_id, m.content FROM (
                SELECT conversation_id, message_id, id, ts_rank(vector, q.query) AS score,
                    ROW_NUMBER() OVER (
                        PARTITION BY conversation_id
                        ORDER BY ts_rank(vector, q.query) DESC, id DESC
                    ) AS n
                FROM conversations_searchdocument, ({"SELECT " + tsquery}) AS q(query)
                WHERE owner_id = %s AND vector @@ q.query
            ) AS ranked
            LEFT JOIN conversations_message m ON m.id = ranked.message_id
            WHERE ranked.n = 1
            ORDER BY ranked.score DESC, ranked.id DESC
            LIMIT %s
            """,
            [*params, user_id, MAX_CONVERSATIONS],
        )
        return list(cursor.fetchall())


def highlight(text: str, found: list[str], width: int = 160) -> SafeString:
    """An escaped window of `text` around the first match, each match in <mark>."""
    flat = " ".join(text.split())
    pattern = re.compile(
        "|".join(re.escape(t) for t in sorted(found, key=len, reverse=True)), re.IGNORECASE
    )
    first = pattern.search(flat)
    start = max(0, (first.start() if first else 0) - width // 3)
    window = flat[start : start + width]
    pieces = []
    position = 0
    for match in pattern.finditer(window):
        pieces.append(escape(window[position : match.start()]))
        pieces.append(f"<mark>{escape(match.group())}</mark>")
        position = match.end()
    pieces.append(escape(window[position:]))
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + width < len(flat) else ""
    return mark_safe(prefix + "".join(pieces) + suffix)
