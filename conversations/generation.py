"""The life of one reply, owned by a per-process registry rather than by any socket.

A generation is an asyncio task: with the history read when its turn was stored, it
streams from `upstream`, sends coalesced deltas (with a sequence number) to the
conversation's channel-layer group, and saves the reply once at the end. The registry
checkpoints the partial text of all its generations together, at most once per interval,
and renews their leases in the same write; a reply whose lease runs out belonged to a dead process.
Stop and snapshot requests from other processes arrive through `control`; a first
exchange is named afterwards by `titles`.

Closing a tab does not touch the generation. Stop cancels its task: the cancellation
closes the upstream HTTP response, and `run` catches it, wherever it lands, and saves what
was generated (in a shielded task, so a second cancellation cannot lose the reply). A final
save the database refuses is tried again with less (see `save_reply`): the person saw the
reply, so it is kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils.translation import gettext as _

from conversations import (
    control,
    frames,
    history,
    layers,
    rendering,
    services,
    titles,
    upstream,
)
from conversations.models import Conversation, Message
from conversations.services import ServiceError
from conversations.services.replies import Checkpoint, Outcome
from conversations.services.turns import TurnPlan, TurnStart
from conversations.text import clean

logger = logging.getLogger(__name__)


# The single door to the database from async code: Channels' wrapper closes stale
# connections around each call.
db = database_sync_to_async


class Generation:
    def __init__(self, plan: TurnPlan) -> None:
        self.plan = plan
        self.seq = 0
        self.text_parts: list[str] = []
        self.thinking_parts: list[str] = []
        self.stop_requested = False
        self.task: asyncio.Task[None] | None = None
        # Deltas not yet sent: (kind, text), adjacent ones of a kind merged.
        self._pending: list[list[str]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._checkpointed_seq = 0
        # Frames the channel layer refused (an outage): counted, logged once.
        self._lost_frames = 0
        # Set once the final save is stored, before its `done` frame is sent.
        self.saved = False
        # When the row was last written (the placeholder, then each checkpoint) and its
        # lease last renewed: a reply of d seconds gets about d checkpoints, not d + 1.
        self._saved_at = self._renewed_at = time.monotonic()
        # Per token, only the frame is built: its address and id are worked out once.
        self._group = services.events.group_name(plan.conversation_public_id)
        self._message_id = str(plan.message_public_id)

    # --- what a (re)connecting socket is told ------------------------------------------
    def lease_due(self, now: float, lease_seconds: float) -> bool:
        """Whether the lease needs renewing (no checkpoint renewed it for a third of it)."""
        if now - self._renewed_at < lease_seconds / 3:
            return False
        self._renewed_at = now
        return True

    def snapshot(self) -> dict[str, Any]:
        """Exactly the text of the deltas sent so far, and the `seq` of the last one."""
        return {
            "message_id": str(self.plan.message_public_id),
            "seq": self.seq,
            "text": "".join(self.text_parts),
            "thinking": "".join(self.thinking_parts),
        }

    def checkpoint(self, now: float, interval: float) -> Checkpoint | None:
        """The partial reply to save, if it changed and the last save is an interval old
        (a tenth of slack for the ticker's jitter)."""
        if self.seq == self._checkpointed_seq or now - self._saved_at < interval * 0.9:
            return None
        self._checkpointed_seq = self.seq
        self._saved_at = self._renewed_at = now
        return Checkpoint(
            self.plan.message_id, "".join(self.text_parts), "".join(self.thinking_parts), self.seq
        )

    # --- deltas ------------------------------------------------------------------------
    def _push(self, kind: str, text: str) -> None:
        if self._pending and self._pending[-1][0] == kind:
            self._pending[-1][1] += text
        else:
            self._pending.append([kind, text])
        self._wake.set()

    async def _flusher(self) -> None:
        """Send pending deltas. No fixed window: one frame as soon as the loop is free, and
        whatever arrives while a send is in flight joins the next frame."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                kind, text = self._pending.pop(0)
                # Update text and seq together, before the await: a snapshot taken while
                # the send is in flight includes it, and the socket drops the duplicate.
                self.seq += 1
                if kind == "text":
                    self.text_parts.append(text)
                    frame = frames.delta(self._message_id, self.seq, text)
                else:
                    self.thinking_parts.append(text)
                    frame = frames.thinking(self._message_id, self.seq, text)
                try:
                    await services.events.send_to_group(self._group, frame)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # The layer failed (Redis restarting): the reply goes on and keeps the
                    # text; pages see the seq gap and resync from the stored text.
                    self._lost_frames += 1
                    if self._lost_frames == 1:
                        logger.warning(
                            "Deltas of %s are not reaching the pages: %r", self._message_id, exc
                        )
            if self._closing:
                return

    # --- the turn ----------------------------------------------------------------------
    async def run(self) -> None:
        plan = self.plan
        flusher = asyncio.create_task(self._flusher())
        status = Message.Status.ERROR
        error_code, error_message = "", ""
        model, stop_reason = plan.model, ""
        input_tokens: int | None = None
        output_tokens: int | None = None
        cache_read: int | None = None
        cache_write: int | None = None
        sending = history.Sending(plan)
        try:
            # Without the control group, a Stop from another process cannot reach this
            # reply; the reply itself must go on all the same. Inside the `try`: a Stop or a
            # shutdown while the layer answers slowly ends the reply like any other.
            await layers.best_effort(
                partial(registry.join_control, plan.conversation_public_id), "the control group"
            )
            # The history fitted to the model's window, summarised, cached (`history`).
            async for event in sending.events():
                if isinstance(event, upstream.TextDelta):
                    self._push("text", event.text)
                elif isinstance(event, upstream.ThinkingDelta):
                    self._push("thinking", event.text)
                elif isinstance(event, upstream.Started):
                    model = event.model or model
                    input_tokens = event.input_tokens
                    cache_read = event.cache_read_input_tokens
                    cache_write = event.cache_creation_input_tokens
                elif isinstance(event, upstream.Finished):
                    stop_reason = event.stop_reason
                    input_tokens = (
                        event.input_tokens if event.input_tokens is not None else input_tokens
                    )
                    output_tokens = event.output_tokens
                    cache_read = event.cache_read_input_tokens
                    cache_write = event.cache_creation_input_tokens
            status = Message.Status.COMPLETE
        except asyncio.CancelledError:
            status = Message.Status.STOPPED if self.stop_requested else Message.Status.INTERRUPTED
            if status == Message.Status.INTERRUPTED:
                error_code = "interrupted"
                error_message = _("The server shut down while this reply was being written.")
        except upstream.UpstreamError as exc:
            error_code, error_message = exc.code, exc.message
        except Exception:
            logger.exception("Generation of %s failed", plan.message_public_id)
            error_code = "internal_error"
            error_message = _("Something went wrong on the server while writing this reply.")
        outcome_fields = {
            "status": status,
            "stop_reason": stop_reason,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "error_code": error_code,
            "error_message": error_message,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
            "context": sending.context,
        }
        # Shielded: a second cancellation (shutdown after stop) must not lose the reply.
        finishing = registry.track(self._finish(flusher, outcome_fields), wait_at_shutdown=True)
        await asyncio.shield(finishing)
        await layers.best_effort(
            partial(registry.leave_control, plan.conversation_public_id), "the control group"
        )

    def _saved(self) -> None:
        self.saved = True

    async def _finish(self, flusher: asyncio.Task[None], fields: dict[str, Any]) -> None:
        self._closing = True
        self._wake.set()
        try:
            await flusher
        except Exception:
            logger.exception("Sending the last deltas of %s failed", self.plan.message_public_id)
        outcome = Outcome(
            content="".join(self.text_parts),
            thinking="".join(self.thinking_parts),
            seq=self.seq,
            **fields,
        )
        frame = await save_reply(self.plan, outcome, saved=self._saved)
        if frame is None:
            return
        conversation = self.plan.conversation_public_id
        if outcome.error_code and outcome.status == Message.Status.ERROR:
            error = frames.error(
                outcome.error_code, outcome.error_message, self.plan.message_public_id
            )
            # The `done` frame already carries the error; this one only alerts.
            await layers.best_effort(
                partial(services.events.broadcast, conversation, error), "error"
            )
        if self.plan.name_after and outcome.status == Message.Status.COMPLETE and outcome.content:
            registry.track(titles.name_conversation(self.plan, outcome.content, registry.titles))


async def save_reply(
    plan: TurnPlan, outcome: Outcome, saved: Callable[[], None] | None = None
) -> dict[str, Any] | None:
    """The final save of a reply, and its `done` frame sent to the conversation. Returns
    the frame, or None if the reply was final already or could not be saved.

    Text is cleaned where it comes in, so the first try nearly always holds. If the
    database refuses it all the same, the reply the person saw is not lost: it is saved
    again with every text cleaned, then, if that fails too, with its answer and outcome
    but without its thinking and search entries. Each failure is logged, and the page is
    told what was left out with a `save_failed` error after the `done` frame.
    """
    # Rendered once, here in the event loop (not in the database thread every socket
    # shares), and stored: pages and the `done` frame use this HTML from now on.
    reply, problem = await _save_reply(plan, rendered(outcome))
    if saved is not None:
        # Before the `done` frame goes out: a socket that joins after it must learn the end
        # from the database, not be told the reply is still being written.
        saved()
    frame = frames.done(reply) if reply is not None else None
    conversation = plan.conversation_public_id
    if frame is not None:
        try:
            # The frame that ends the reply on every page is worth waiting for a layer that
            # is coming back; a page that still misses it finds the stored reply by itself
            # (consumers.ConversationConsumer follows a streaming reply, see `_follow`).
            await layers.retrying(partial(services.events.broadcast, conversation, frame), "done")
        except layers.LayerUnavailable:
            pass
    if problem:
        error = frames.error("save_failed", problem, plan.message_public_id)
        await layers.best_effort(partial(services.events.broadcast, conversation, error), "error")
    return frame


def rendered(outcome: Outcome) -> Outcome:
    """The outcome with its answer's HTML, by the current renderer."""
    html = rendering.render_markdown(outcome.content)
    return dataclasses.replace(outcome, html=html, html_version=rendering.VERSION)


async def _save_reply(plan: TurnPlan, outcome: Outcome) -> tuple[Message | None, str]:
    """`save_reply`'s tries: the saved reply, and a sentence for the page ("" when
    nothing of what it was shown was left out)."""
    try:
        return await services.events.call(services.replies.finish_reply, plan, outcome), ""
    except services.STORAGE_ERRORS:
        logger.exception(
            "The final save of %s failed; trying again with its text cleaned",
            plan.message_public_id,
        )
    cleaned_plan = dataclasses.replace(
        plan, question_text=clean(plan.question_text), first_title=clean(plan.first_title)
    )
    cleaned = dataclasses.replace(
        outcome,
        content=clean(outcome.content),
        thinking=clean(outcome.thinking),
        stop_reason=clean(outcome.stop_reason),
        model=clean(outcome.model),
        error_message=clean(outcome.error_message),
    )
    if cleaned.content != outcome.content:
        cleaned = rendered(cleaned)
    try:
        reply = await services.events.call(services.replies.finish_reply, cleaned_plan, cleaned)
    except services.STORAGE_ERRORS:
        logger.exception(
            "The final save of %s failed again; saving it without thinking or search entries",
            plan.message_public_id,
        )
    else:
        if reply is None or (cleaned == outcome and cleaned_plan == plan):
            return reply, ""  # the database failed once, then took it all: nothing lost
        return reply, _(
            "Characters that cannot be stored were removed from this reply when it was saved."
        )
    bare = dataclasses.replace(cleaned, thinking="")
    try:
        reply = await services.events.call(
            services.replies.finish_reply, cleaned_plan, bare, index=False
        )
    except services.STORAGE_ERRORS:
        logger.exception("The final save of %s failed for good", plan.message_public_id)
        return None, _(
            "The server could not save this reply. After a reload, only the part saved "
            "while it was being written remains."
        )
    if reply is None:
        return None, ""
    return reply, _(
        "This reply was saved without its reasoning, and search will not find it: the "
        "database refused them."
    )


class Registry:
    """The generations running in this process, by conversation."""

    def __init__(self) -> None:
        self._running: dict[UUID, Generation] = {}
        self._ticker: asyncio.Task[None] | None = None
        # Other processes reach the writer of a reply through its control group.
        self.control = control.ControlChannel(self.on_control)
        self.titles = titles.TitlePacer()
        # Work that outlives a generation's task: final saves (awaited at shutdown) and
        # titles (cancelled at shutdown). Held here so none is garbage-collected mid-way.
        self._saving: set[asyncio.Task[Any]] = set()
        self._extras: set[asyncio.Task[Any]] = set()
        # Set when the process is told to stop (`lifecycle`): new turns are refused.
        self.draining = False

    def track(self, coroutine: Any, *, wait_at_shutdown: bool = False) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        tasks = self._saving if wait_at_shutdown else self._extras
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def launch(self, plan: TurnPlan) -> Generation:
        generation = Generation(plan)
        key = plan.conversation_public_id
        self._running[key] = generation
        generation.task = asyncio.create_task(
            generation.run(), name=f"generation-{plan.message_public_id}"
        )

        def forget(_task: asyncio.Task[None]) -> None:
            if self._running.get(key) is generation:
                del self._running[key]

        generation.task.add_done_callback(forget)
        self.ensure_ticker()
        return generation

    def stop(self, conversation_public_id: UUID) -> bool:
        generation = self._running.get(conversation_public_id)
        if generation is None or generation.task is None or generation.task.done():
            return False
        generation.stop_requested = True
        generation.task.cancel()
        return True

    async def wait(self, conversation_public_id: UUID) -> None:
        """Until the conversation's reply and the work after it (final save, title) end."""
        generation = self._running.get(conversation_public_id)
        if generation is not None and generation.task is not None:
            await asyncio.gather(generation.task, return_exceptions=True)
        await asyncio.gather(*self._saving, *self._extras, return_exceptions=True)

    async def drain(self, grace: float, hurry: asyncio.Event) -> None:
        """Refuse new turns, let the running replies go on for up to `grace` seconds (or
        until `hurry` is set), then `shutdown`: what still runs is saved `interrupted` with
        every delta sent so far."""
        self.draining = True
        replies = [g.task for g in self._running.values() if g.task is not None]
        if replies:
            logger.info(
                "Draining: %d reply(ies) being written get up to %.0f s", len(replies), grace
            )
            all_done = asyncio.ensure_future(asyncio.wait(replies))
            hurried = asyncio.ensure_future(hurry.wait())
            await asyncio.wait({all_done, hurried}, timeout=grace, return_when="FIRST_COMPLETED")
            for waiter in (all_done, hurried):
                waiter.cancel()
            left = sum(not task.done() for task in replies)
            if left:
                logger.info("Draining: %d reply(ies) saved as interrupted", left)
        await self.shutdown()

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every generation (saved as interrupted), the ticker and the listener.

        Bounded: a task stuck in a network call (a Redis receive) must not hang shutdown.
        """
        replies = [g.task for g in self._running.values() if g.task is not None]
        for task in replies:
            task.cancel()
        await _settle(replies, timeout)
        await _settle(list(self._saving), timeout)
        background = list(self._extras)
        if self._ticker is not None:
            background.append(self._ticker)
            self._ticker = None
        for task in background:
            task.cancel()
        listener = self.control.close()
        if listener is not None:
            background.append(listener)
        await _settle(background, timeout)

    # --- across processes ----------------------------------------------------------------
    async def join_control(self, conversation_public_id: UUID) -> None:
        await self.control.join(conversation_public_id)

    async def leave_control(self, conversation_public_id: UUID) -> None:
        if conversation_public_id not in self._running:
            await self.control.leave(conversation_public_id)

    async def on_control(self, message: dict[str, Any]) -> None:
        """A stop or snapshot request for a reply this process may be writing."""
        conversation = UUID(message["conversation"])
        generation = self._running.get(conversation)
        if generation is None:
            return
        if message["type"] == "generation.stop":
            self.stop(conversation)
        elif message["type"] == "generation.snapshot":
            # Saved already: its `done` is out, and the asking socket reads the end from the
            # database (a snapshot now would show it as still being written).
            snapshot = None if generation.saved else generation.snapshot()
            await get_channel_layer().send(
                message["reply_to"], {"type": "chat.snapshot", "snapshot": snapshot}
            )

    # --- periodic work -------------------------------------------------------------------
    def ensure_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker.done() or self._ticker.get_loop() is not loop:
            self._ticker = loop.create_task(self._tick(), name="generation-ticker")

    async def _tick(self) -> None:
        interval = settings.CHAT_CHECKPOINT_INTERVAL
        reap_every = max(1, round(settings.CHAT_LEASE_SECONDS / 2 / interval))
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            try:
                await self.checkpoint_now()
                if ticks % reap_every == 0:
                    await services.events.call(services.replies.reap_stale_replies)
            except Exception:
                logger.exception("Checkpoint or reaping failed; retrying next tick")

    async def checkpoint_now(self) -> None:
        generations = list(self._running.values())
        if not generations:
            return
        now = time.monotonic()
        interval = settings.CHAT_CHECKPOINT_INTERVAL
        batch = [c for c in (g.checkpoint(now, interval) for g in generations) if c is not None]
        saved = {c.message_id for c in batch}
        renew = [
            g.plan.message_id
            for g in generations
            if g.plan.message_id not in saved and g.lease_due(now, settings.CHAT_LEASE_SECONDS)
        ]
        if batch or renew:
            await services.events.call(services.replies.checkpoint, batch, renew)

    def local_snapshot(self, conversation_public_id: UUID) -> dict[str, Any] | None:
        """What a socket that (re)connects is told of a reply written here; None once the
        reply is saved (its task may still be ending: its `done` frame is already out)."""
        generation = self._running.get(conversation_public_id)
        if generation is None or generation.saved:
            return None
        return generation.snapshot()


async def _settle(tasks: list[asyncio.Task[Any]], timeout: float) -> None:
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            logger.warning(
                "%d task(s) did not end within %.0f s of shutdown", len(pending), timeout
            )


registry = Registry()


# --- Turn actions (the async side of services) -------------------------------------------
def _refuse_while_draining(*, sent_again: bool = False) -> None:
    """New turns are refused while the process drains; the page sends a refused message
    again once it has reconnected (to this process restarted, or to another)."""
    if not registry.draining:
        return
    if sent_again:
        message = _(
            "The server is restarting, so your message was not sent yet. "
            "It will be sent when the page reconnects."
        )
    else:
        message = _("The server is restarting. Try again in a moment.")
    raise ServiceError("server_restarting", message)


async def _launch(start: TurnStart) -> TurnStart:
    if start.plan is not None:
        registry.launch(start.plan)
    return start


async def send(
    user: AbstractBaseUser,
    conversation: Conversation,
    content: Any,
    client_id: str = "",
    attachment_ids: tuple[str, ...] = (),
) -> TurnStart:
    _refuse_while_draining(sent_again=True)
    with registry.titles.starting():
        start = await services.events.call(
            services.turns.start_turn, user, conversation, content, client_id, attachment_ids
        )
    return await _launch(start)


async def regenerate(
    user: AbstractBaseUser, conversation: Conversation, message_id: Any = None
) -> TurnStart:
    _refuse_while_draining()
    with registry.titles.starting():
        start = await services.events.call(
            services.turns.regenerate, user, conversation, message_id
        )
    return await _launch(start)


async def edit(
    user: AbstractBaseUser, conversation: Conversation, message_id: Any, content: Any
) -> TurnStart:
    _refuse_while_draining()
    with registry.titles.starting():
        start = await services.events.call(
            services.turns.edit_and_resend, user, conversation, message_id, content
        )
    return await _launch(start)


async def stop(conversation: Conversation) -> None:
    if registry.stop(conversation.public_id):
        return
    # Maybe another process writes it: the database knows, the owner's registry acts.
    # Through `db`, not the async ORM: the consumer relies on it (see its `dispatch`).
    streaming = Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING)
    if await db(streaming.exists)():
        try:
            await layers.retrying(
                partial(control.request_stop, conversation.public_id), "stop", patience=3.0
            )
        except layers.LayerUnavailable:
            raise ServiceError(
                "layer_unavailable",
                _("The server cannot reach the process writing this reply. Try again shortly."),
            ) from None
        return
    raise ServiceError("nothing_to_stop", _("No reply is being written right now."))
