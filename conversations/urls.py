from django.urls import path

from conversations import attachment_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("search/", views.search_view, name="search"),
    path("archived/", views.archived, name="archived"),
    path("c/", views.create, name="create"),
    path("c/<uuid:public_id>/", views.chat, name="chat"),
    path("c/<uuid:public_id>/messages/", views.messages_fragment, name="messages"),
    path("c/<uuid:public_id>/rename/", views.rename, name="rename"),
    path("c/<uuid:public_id>/delete/", views.delete, name="delete"),
    path("c/<uuid:public_id>/settings/", views.conversation_settings, name="settings"),
    path("c/<uuid:public_id>/model/", views.choose_model, name="model"),
    path("c/<uuid:public_id>/pin/", views.pin, name="pin"),
    path("c/<uuid:public_id>/archive/", views.archive, name="archive"),
    path("c/<uuid:public_id>/export.md", views.export_markdown, name="export_md"),
    path("c/<uuid:public_id>/export.json", views.export_json, name="export_json"),
    path("c/<uuid:public_id>/attachments/", attachment_views.upload, name="attachments"),
    path(
        "c/<uuid:public_id>/attachments/<uuid:attachment_id>/",
        attachment_views.serve,
        name="attachment",
    ),
]
