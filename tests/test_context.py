"""Fitting a history into a budget: whole exchanges left out from the oldest, never the
system prompt or the new message; a cut reused until the next overflow; the gateway's own
count used where it covers the prefix; refusals read."""

from __future__ import annotations

import pytest

from conversations import context, tokens


def thread(exchanges: int, words: int = 40) -> tuple[list[dict], list[str]]:
    history, ids = [], []
    for n in range(exchanges):
        history.append({"role": "user", "content": " ".join(["ask"] * words)})
        ids.append(f"u{n}")
        history.append({"role": "assistant", "content": " ".join(["say"] * words)})
        ids.append(f"a{n}")
    history.append({"role": "user", "content": "the new question"})
    ids.append("new")
    return history, ids


def cost(history: list[dict], system: str = "") -> int:
    return tokens.of_text(system) + tokens.MESSAGE_OVERHEAD + sum(map(tokens.of_message, history))


def test_a_history_that_fits_is_sent_whole():
    history, ids = thread(3)
    fitted = context.fit(history, ids, "sys", 10_000)
    assert (fitted.start, fitted.needs_summary, fitted.tokens) == (0, False, cost(history, "sys"))


def test_an_overflow_leaves_out_whole_exchanges_from_the_oldest():
    history, ids = thread(20)
    budget = cost(history) // 2
    fitted = context.fit(history, ids, "sys", budget, summary_allowance=0, refill=0.75)
    assert fitted.start > 0 and history[fitted.start]["role"] == "user"
    assert ids[fitted.start].startswith("u")
    kept = history[fitted.start :]
    assert kept[-1]["content"] == "the new question"
    assert cost(kept, "sys") <= budget * 0.75
    # As much as fits: one exchange more would not.
    assert cost(history[fitted.start - 2 :], "sys") > budget * 0.75
    assert fitted.needs_summary


def test_the_previous_cut_and_summary_are_reused_while_they_fit():
    history, ids = thread(20)
    previous = context.Previous(reply_id="a18", first_id="u10", summary="S", prompt_tokens=None)
    fitted = context.fit(history, ids, "", 100_000, previous=previous)
    assert (fitted.start, fitted.summary, fitted.needs_summary) == (20, "S", False)


def test_the_gateways_count_of_the_prefix_is_used_where_it_covers_it():
    history, ids = thread(3)
    estimated = cost(history)
    # The gateway counted far more for the prefix than the estimate says: believed.
    digest = context.prompt_digest("m", "")
    previous = context.Previous("a2", None, "", prompt_tokens=5_000, digest=digest)
    fitted = context.fit(history, ids, "", 10_000, previous=previous, digest=digest)
    assert fitted.tokens == 5_000 + tokens.of_message(history[-2]) + tokens.of_message(history[-1])
    # By the estimate alone all of it fits 4,000; by the gateway's count it does not.
    assert estimated < 4_000
    assert context.fit(history, ids, "", 4_000).start == 0
    cut = context.fit(
        history, ids, "", 4_000, previous=previous, digest=digest, summary_allowance=0
    )
    assert cut.start > 0
    # Another model or system prompt since: that count is of another prompt, not used.
    other = context.prompt_digest("another-model", "")
    assert context.fit(history, ids, "", 4_000, previous=previous, digest=other).start == 0


def test_a_new_message_too_long_alone_is_refused_with_its_size():
    history = [{"role": "user", "content": " ".join(["word"] * 500)}]
    with pytest.raises(context.TooLong) as refused:
        context.fit(history, ["q"], "sys", 100)
    assert refused.value.tokens > 100 and refused.value.budget == 100
    assert "too long for the model" in refused.value.message


def test_the_summary_goes_after_the_system_prompt():
    assert context.with_summary("Be brief.", "") == "Be brief."
    assert context.with_summary("Be brief.", "They met.") == (
        f"Be brief.\n\n{context.SUMMARY_HEADING}\nThey met."
    )


def test_the_summary_request_fits_its_budget_keeping_the_newest():
    history, _ = thread(50)
    asked = context.summary_request("Before: hello.", history[:-1], 300)
    assert "Before: hello." in asked
    assert tokens.of_text(asked) < 300 + 200  # the instructions come on top
    assert asked.count("User:") < 50


@pytest.mark.parametrize(
    ("detail", "stated"),
    [
        ("prompt is too long: 210000 tokens > 200000 maximum", (210_000, 200_000)),
        (
            "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, "
            "decrease input length or `max_tokens` and try again",
            (188_240, 200_000),
        ),
        ("Input is too long for requested model.", None),
    ],
)
def test_a_refusal_is_read(detail, stated):
    assert context.is_too_long(detail)
    assert context.stated_limit(detail) == stated


def test_other_refusals_are_not_taken_for_too_long():
    assert not context.is_too_long("messages: roles must alternate")
