"""A Content-Security-Policy header on every response (Django 5.2 has none built in)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

HEADER = "Content-Security-Policy"


def policy(directives: dict[str, list[str]]) -> str:
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


class ContentSecurityPolicyMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        # Built once: the header is the same on every page.
        self.header = policy(settings.CONTENT_SECURITY_POLICY)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        return self._secure(self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        return self._secure(await self.get_response(request))

    def _secure(self, response: HttpResponseBase) -> HttpResponseBase:
        # A view that sets its own policy (none does today) keeps it.
        response.headers.setdefault(HEADER, self.header)
        return response
