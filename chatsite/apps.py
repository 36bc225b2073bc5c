"""The admin application of this project: Django's, with a site that has a usage page."""

from django.contrib.admin.apps import AdminConfig


class ChatAdminConfig(AdminConfig):
    # A dotted path, imported only when `admin.site` is first used (models are ready then).
    default_site = "conversations.adminsite.ChatAdminSite"
