"""The conversation websocket: transport only. It authorises, parses, calls a turn action,
and relays the conversation group's frames; generations live in `generation.registry`."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from conversations import frames, generation, protocol, services
from conversations.generation import db
from conversations.services import ServiceError

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_FOUND = 4404


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    # While (message_id, seq): deltas of that reply up to seq are already in `state`.
    _seen: tuple[str, int] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a close code can only travel on an open socket.
            await self.accept()
            await self.close(code=CLOSE_NOT_SIGNED_IN)
            return
        public_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await db(services.get_conversation)(user, public_id)
        if conversation is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user = user
        self.conversation = conversation
        # Join before the snapshot: every delta after it is queued for us, none is missed.
        self.group = services.group_name(conversation.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        generation.registry.ensure_ticker()
        snapshot = await generation.registry.snapshot(conversation)
        if snapshot is not None:
            self._seen = (snapshot["message_id"], snapshot["seq"])
        await self.send_json(frames.state(snapshot))

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.group is None:
            return
        try:
            value = protocol.decode(text_data, bytes_data, max_bytes=settings.CHAT_MAX_FRAME_BYTES)
            frame = protocol.parse(value)
            await self.dispatch_frame(frame)
        except (protocol.ProtocolError, ServiceError) as exc:
            await self.send_json(frames.error(exc.code, exc.message))

    async def dispatch_frame(self, frame: protocol.ClientFrame) -> None:
        if isinstance(frame, protocol.Send):
            start = await generation.send(
                self.user, self.conversation, frame.content, frame.client_id
            )
            if start.plan is None:
                # A resend of a stored message: tell this socket, start nothing.
                await self.send_json(frames.message(start.user_message))
        elif isinstance(frame, protocol.Stop):
            await generation.stop(self.conversation)
        elif isinstance(frame, protocol.Regenerate):
            await generation.regenerate(self.user, self.conversation)
        elif isinstance(frame, protocol.Edit):
            await generation.edit(self.user, self.conversation, frame.message_id, frame.content)

    async def chat_frame(self, event: dict[str, Any]) -> None:
        frame = event["frame"]
        if self._seen is not None and frame["type"] in ("delta", "thinking"):
            message_id, seq = self._seen
            if frame["message_id"] == message_id:
                if frame["seq"] <= seq:
                    return
                self._seen = None
        await self.send_json(frame)
