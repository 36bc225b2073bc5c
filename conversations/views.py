"""HTTP views: thin. Parse, authorise (someone else's conversation is a 404), call, answer."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from conversations import credentials, exports, services
from conversations.models import Conversation, Message


def _own(request: HttpRequest, public_id: UUID) -> Conversation:
    conversation = services.get_conversation(request.user, public_id)
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def _page_context(request: HttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    credential = credentials.resolve(request.user)
    recent = Conversation.objects.filter(owner=request.user).order_by("-updated_at")[:50]
    return {
        "conversation": conversation,
        "recent": recent,
        "has_key": credential is not None,
        "is_demo": bool(credential and credential.is_demo),
        "default_model": credential.default_model if credential else "",
    }


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/chat.html", _page_context(request, None))


@require_POST
@login_required
def create(request: HttpRequest) -> HttpResponse:
    conversation = services.create_conversation(request.user)
    return redirect("chat", public_id=conversation.public_id)


@require_GET
@login_required
def chat(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    context = _page_context(request, conversation)
    context["messages"] = _active_messages(conversation)
    return render(request, "conversations/chat.html", context)


@require_GET
@login_required
def messages_fragment(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The rendered message list alone: a reconnecting page reconciles with it."""
    conversation = _own(request, public_id)
    context = {"messages": _active_messages(conversation)}
    return render(request, "conversations/_messages.html", context)


def _active_messages(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(superseded_at=None).order_by("id"))


@require_GET
@login_required
def export_markdown(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    response = HttpResponse(
        exports.as_markdown(conversation), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="conversation-{conversation.public_id}.md"'
    )
    return response


@require_GET
@login_required
def export_json(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    body = json.dumps(exports.as_json(conversation), ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="conversation-{conversation.public_id}.json"'
    )
    return response
