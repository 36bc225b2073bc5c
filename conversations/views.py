"""HTTP views: thin. Parse, authorise (someone else's conversation is a 404), call, answer."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations import credentials, exports, listing, pages, search, services
from conversations.crypto import DecryptionError
from conversations.forms import ConversationSettingsForm, RenameForm, SearchForm
from conversations.models import Conversation
from conversations.services import ServiceError


def _own(request: HttpRequest, public_id: UUID) -> Conversation:
    conversation = services.conversations.get_conversation(request.user, public_id)
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def _page_context(request: HttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    try:
        credential = credentials.resolve(request.user)
    except DecryptionError:
        # The page still opens; a turn then explains the unreadable key.
        credential = None
    return {
        "conversation": conversation,
        "page": listing.page(request.user),
        "has_key": credential is not None,
        "is_demo": bool(credential and credential.is_demo),
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        # The Model select: the credential's models, its default first.
        "model_choices": list(credential.allowed_models) if credential else [],
        # The conversation's model, or (the home page) the one its first send will use.
        "current_model": (
            ((conversation.model if conversation else "") or credential.default_model)
            if credential
            else ""
        ),
        # Attach offers images only where the person's models take them.
        "takes_images": credential is None or credential.vision,
        "max_file_bytes": settings.CHAT_ATTACHMENT_MAX_BYTES,
        "max_files": settings.CHAT_ATTACHMENTS_PER_MESSAGE,
    }


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/chat.html", _page_context(request, None))


@require_POST
@login_required
def create(request: HttpRequest) -> HttpResponse:
    """A new conversation. The home page's first send asks for JSON: the page goes on with
    the new conversation where it is (its header and the list as the server renders them),
    without a page load; a plain form post (New chat) is redirected to it."""
    try:
        conversation = services.conversations.create_conversation(
            request.user,
            model=request.POST.get("model") or None,
            allowed=_allowed_models(request),
        )
    except ServiceError as exc:
        if _wants_json(request):
            return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=400)
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    if not _wants_json(request):
        return redirect("chat", public_id=conversation.public_id)
    context = _page_context(request, conversation)
    public_id = conversation.public_id
    return JsonResponse(
        {
            "id": str(public_id),
            "url": reverse("chat", args=[public_id]),
            "messages_url": reverse("messages", args=[public_id]),
            "rename_url": reverse("rename", args=[public_id]),
            "attachments_url": reverse("attachments", args=[public_id]),
            "title": conversation.display_title,
            "header_html": render_to_string(
                "conversations/_chat_header.html", context, request=request
            ),
            "list_html": render_to_string("conversations/_list.html", context, request=request),
        },
        status=201,
    )


def _allowed_models(request: HttpRequest) -> tuple[str, ...]:
    try:
        credential = credentials.resolve(request.user)
    except DecryptionError:
        return ()
    return credential.allowed_models if credential else ()


@require_GET
@login_required
def chat(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    if "at" in request.GET:
        # Opened at one version (a search hit): show its thread, then drop the parameter so
        # a reload does not switch back from a version chosen since.
        try:
            at = services.threads.message_uuid(request.GET["at"])
            services.threads.switch(conversation, at)
        except ServiceError:
            pass  # no such message here (any more): the conversation as it is
        else:
            return redirect(f"{request.path}?message={at}#m-{at}")
    context = _page_context(request, conversation)
    page = None
    if "message" in request.GET:
        # Opened at a message (a search hit, a link): the thread around it, if it is on the
        # shown thread; else the conversation as it is.
        message = _message_id(request.GET["message"])
        page = pages.around(conversation, message) if message else None
    context.update(_thread(page or pages.newest(conversation)))
    context["settings_form"] = _settings_form(request, conversation)
    return render(request, "conversations/chat.html", context)


def _settings_form(
    request: HttpRequest, conversation: Conversation, data: Any = None
) -> ConversationSettingsForm:
    return ConversationSettingsForm(
        data, instance=conversation, model_choices=list(_allowed_models(request))
    )


def _message_id(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _thread(page: pages.Page) -> dict[str, Any]:
    return {"messages": page.shown, "history": page}


@require_GET
@login_required
def messages_fragment(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Messages of the shown thread as HTML (docs/protocol.md, "The message fragment"):
    the newest page; `?before=<id>` the page above a message (scrolling up), `?after=<id>`
    the page shown below one (scrolling down from a search hit); `?since=<id>` what a
    reconnecting page that shows the thread down to that message lacks (the newest page
    instead when that is not all it lacks). `X-Thread-Part` says which was answered."""
    conversation = _own(request, public_id)
    cursors = [name for name in ("before", "after", "since") if name in request.GET]
    if len(cursors) > 1:
        return HttpResponse(
            "Give one of before, after and since.", status=400, content_type="text/plain"
        )
    part, page = "newest", None
    if cursors:
        part = cursors[0]
        message = _message_id(request.GET[part])
        if message is None:
            return HttpResponse(
                f"{part} must be a message id.", status=400, content_type="text/plain"
            )
        if part == "since":
            page = pages.tail(conversation, message)
            if page is None:
                part = "newest"
        else:
            page = getattr(pages, part)(conversation, message)
            if page is None:
                raise Http404("No such message")
    response = render(
        request,
        "conversations/_messages.html",
        _thread(page or pages.newest(conversation)),
    )
    response["X-Thread-Part"] = part
    return response


@require_GET
@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    """More of the sidebar list (the "Load more" link), as an HTML fragment."""
    page = listing.page(request.user, request.GET.get("cursor"))
    return render(request, "conversations/_list.html", {"page": page})


@require_GET
@login_required
def search_view(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    hits = search.search(request.user.pk, query) if query else []
    context = {"query": query, "hits": hits, "searched": bool(query), "form": form}
    if request.GET.get("fragment"):
        return render(request, "conversations/_search_results.html", context)
    context.update(_page_context(request, None))
    return render(request, "conversations/search.html", context)


@require_POST
@login_required
def rename(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        errors = [str(e) for e in form.errors["title"]]
        if _wants_json(request):
            return JsonResponse({"errors": errors}, status=400)
        context = _page_context(request, conversation)
        context.update(
            {
                **_thread(pages.newest(conversation)),
                "rename_errors": errors,
                "settings_form": _settings_form(request, conversation),
            }
        )
        return render(request, "conversations/chat.html", context, status=400)
    services.conversations.rename_conversation(conversation, form.cleaned_data["title"])
    if _wants_json(request):
        return JsonResponse({"title": conversation.title})
    return redirect("chat", public_id=conversation.public_id)


@require_http_methods(["GET", "POST"])
@login_required
def delete(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    if request.method == "POST":
        services.conversations.delete_conversation(conversation)
        return redirect("home")
    context = _page_context(request, conversation)
    return render(request, "conversations/delete.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def conversation_settings(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = _own(request, public_id)
    form = _settings_form(request, conversation, request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.conversations.update_settings(
            conversation, **{name: form.cleaned_data[name] for name in form.Meta.fields}
        )
        if _wants_json(request):
            return JsonResponse({"model": conversation.model})
        return redirect("chat", public_id=conversation.public_id)
    if request.method == "POST" and _wants_json(request):
        # The Settings dialog: the form again with its errors, nothing stored.
        html = render_to_string(
            "conversations/_settings_form.html",
            {"form": form, "conversation": conversation, "in_dialog": True},
            request=request,
        )
        return JsonResponse({"form_html": html}, status=400)
    context = _page_context(request, conversation)
    context["form"] = form
    status = 400 if request.method == "POST" else 200
    return render(request, "conversations/settings.html", context, status=status)


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


@require_POST
@login_required
def choose_model(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The Model select of the chat page: the conversation's model from the next turn."""
    conversation = _own(request, public_id)
    allowed = _allowed_models(request)
    try:
        services.conversations.choose_model(conversation, request.POST.get("model"), allowed)
    except ServiceError as exc:
        if _wants_json(request):
            return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=400)
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    if _wants_json(request):
        return JsonResponse({"model": conversation.model})
    return redirect("chat", public_id=conversation.public_id)


@require_POST
@login_required
def pin(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Pin (`pinned=1`) or unpin (`pinned=0`) a conversation: the conversation menu."""
    conversation = _own(request, public_id)
    services.conversations.pin(conversation, _flag(request, "pinned"))
    return _marked(request, conversation)


@require_POST
@login_required
def archive(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Archive (`archived=1`) or bring back (`archived=0`) a conversation."""
    conversation = _own(request, public_id)
    services.conversations.archive(conversation, _flag(request, "archived"))
    return _marked(request, conversation)


def _flag(request: HttpRequest, name: str) -> bool:
    value = request.POST.get(name, "")
    if value not in ("0", "1"):
        raise BadRequest(f"{name} must be 0 or 1")
    return value == "1"


def _marked(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    # The list as it is now (pinned on top, archived gone), for the page to show.
    if _wants_json(request):
        page = listing.page(request.user)
        return JsonResponse(
            {
                "pinned": conversation.pinned_at is not None,
                "archived": conversation.archived_at is not None,
                "list_html": render_to_string(
                    "conversations/_list.html",
                    {"page": page, "conversation": conversation},
                    request=request,
                ),
            }
        )
    return redirect("chat", public_id=conversation.public_id)


@require_GET
@login_required
def archived(request: HttpRequest) -> HttpResponse:
    """Archived conversations, newest activity first (each can be brought back)."""
    context = _page_context(request, None)
    context["archived"] = listing.archived_page(request.user, request.GET.get("cursor"))
    return render(request, "conversations/archived.html", context)
