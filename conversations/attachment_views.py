"""Attachment HTTP views: upload for the next message, and the file, to its owner only.

Thin, as `views`: parse, authorise (another person's conversation or file is a 404, never
a 403), call `services.attachments`, answer.
"""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from conversations import frames, services
from conversations.attachments import size
from conversations.models import Attachment

# Room for the multipart envelope (boundaries, headers, the CSRF field) around the file.
MULTIPART_OVERHEAD = 64 * 1024


def _refusal(code: str, message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@require_POST
@login_required
def upload(request: HttpRequest, public_id: UUID) -> HttpResponse:
    conversation = services.conversations.get_conversation(request.user, public_id)
    if conversation is None:
        return _refusal("not_found", _("No such conversation."), status=404)
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit + MULTIPART_OVERHEAD:
        # Refused before the body is read: a huge upload costs neither disk nor memory.
        return _refusal(
            "file_too_large",
            _("The file is larger than %(limit)s.") % {"limit": size(limit)},
        )
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return _refusal("missing_file", _("Choose a file to attach."))
    try:
        attachment = services.attachments.upload(request.user, conversation, uploaded)
    except services.ServiceError as exc:
        return _refusal(exc.code, exc.message)
    return JsonResponse(frames.attachment(attachment, conversation.public_id), status=201)


@require_GET
@login_required
def serve(request: HttpRequest, public_id: UUID, attachment_id: UUID) -> HttpResponse:
    attachment = (
        Attachment.objects.filter(
            public_id=attachment_id,
            conversation__public_id=public_id,
            owner=request.user,
        )
        .select_related("conversation")
        .first()
    )
    if attachment is None:
        raise Http404("No such attachment")
    image = attachment.kind == Attachment.Kind.IMAGE
    response = FileResponse(
        attachment.file.open("rb"),
        # Everything but images is downloaded, never shown in the page's origin.
        as_attachment=not image,
        filename=attachment.name,
        content_type=attachment.media_type
        + ("; charset=utf-8" if attachment.media_type.startswith("text/") else ""),
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Private to the person: no shared cache keeps it; the browser may for a while.
    response["Cache-Control"] = "private, max-age=3600"
    # An image opened on its own runs nothing, whatever it holds.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response
