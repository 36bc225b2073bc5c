"""The page shown to a sign-in refused by django-axes: why, and from when to try again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from axes.helpers import get_client_ip_address, get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def retry_after(username: str, ip_address: str | None, cool_off: timedelta) -> datetime:
    """When the lockout of this username from this address surely ends: the cool-off runs
    from its latest counted failure (tries during the lockout are not counted)."""
    latest = AccessAttempt.objects.filter(username=username, ip_address=ip_address).aggregate(
        latest=Max("attempt_time")
    )["latest"]
    return (latest or timezone.now()) + cool_off


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    # Axes calls this with (request, response, credentials) from synchronous code and with
    # (request, credentials) from asynchronous code: credentials may arrive second.
    if credentials is None and isinstance(original_response, dict):
        credentials = original_response
    username = get_client_username(request, credentials) or ""
    cool_off = get_cool_off(request) or timedelta(0)
    until = retry_after(username, get_client_ip_address(request), cool_off)
    minutes = max(1, -(-int((until - timezone.now()).total_seconds()) // 60))
    context = {"until": until, "minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT}
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(max(1, int((until - timezone.now()).total_seconds())))
    return response
