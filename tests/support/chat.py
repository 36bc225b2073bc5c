"""Conversations and signed-in sockets through the consumer, for the websocket tests."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conversations import services
from conversations.demo.server import FakeGateway
from conversations.models import Conversation, Message
from tests.conftest import give_key, open_socket, receive

db = database_sync_to_async


async def new_conversation(user: Any, **fields: Any) -> Conversation:
    """A conversation made through the service, then given `fields` (settings, a title)."""
    conversation = await db(services.conversations.create_conversation)(user)
    if fields:
        await Conversation.objects.filter(pk=conversation.pk).aupdate(**fields)
        await conversation.arefresh_from_db()
    return conversation


async def stored(conversation: Conversation) -> list[Message]:
    """Every message of `conversation` in the database, oldest first."""
    return [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]


async def chat(
    user: Any, gateway: FakeGateway, key: str = "sk-test"
) -> tuple[Conversation, WebsocketCommunicator]:
    """`user` with a key on the gateway, a new conversation, and a socket past its `state`."""
    await db(give_key)(user, gateway, key)
    conversation = await new_conversation(user)
    sock = await open_socket(user, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    return conversation, sock
