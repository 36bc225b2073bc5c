"""The admin site: Django's, plus a usage page at /admin/usage/ linked from the index."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations import usage

CHART_DAYS = 30


def can_view_usage(user: Any) -> bool:
    # Usage names people: staff alone is not enough, they must be allowed to read messages.
    return bool(user.is_active and user.is_staff and user.has_perm("conversations.view_message"))


class ChatAdminSite(admin.AdminSite):
    index_template = "admin/chat_index.html"
    site_header = gettext_lazy("Chat administration")
    site_title = gettext_lazy("Chat admin")

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [path("usage/", self.admin_view(self.usage_view), name="usage"), *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        context = dict(extra_context or {})
        if can_view_usage(request.user):
            context["usage_url"] = reverse("admin:usage", current_app=self.name)
        return super().index(request, context)

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Tokens per day over the last 30 days (everyone, or ?user=<id>), the month's top
        users and the month of every group with a credential. A constant number of queries,
        whatever the number of messages (two more per group)."""
        if not can_view_usage(request.user):
            raise PermissionDenied
        selected = None
        if "user" in request.GET:
            try:
                selected = get_user_model().objects.get(pk=int(request.GET["user"]))
            except (ValueError, get_user_model().DoesNotExist):
                raise Http404(_("No such user.")) from None
        user_id = selected.pk if selected is not None else None
        month = usage.month_start()
        days = usage.tokens_per_day(CHART_DAYS, user_id=user_id)
        context = {
            **self.each_context(request),
            "title": _("Usage of %(user)s") % {"user": selected.get_username()}
            if selected is not None
            else _("Usage"),
            "selected": selected,
            "days": days,
            "chart": usage.chart(days),
            "period": usage.Totals(
                sum(d.input_tokens for d in days),
                sum(d.output_tokens for d in days),
                sum(d.replies for d in days),
                sum(d.cache_read_tokens for d in days),
                sum(d.cache_write_tokens for d in days),
            ),
            "month": month,
            "month_totals": usage.totals(month, user_id=user_id),
            "top_users": usage.top_users(month),
            "groups": usage.groups_usage(month),
            "chart_days": CHART_DAYS,
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/conversations/usage.html", context)
