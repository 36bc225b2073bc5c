from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/", views.create, name="create"),
    path("c/<uuid:public_id>/", views.chat, name="chat"),
    path("c/<uuid:public_id>/messages/", views.messages_fragment, name="messages"),
    path("c/<uuid:public_id>/export.md", views.export_markdown, name="export_md"),
    path("c/<uuid:public_id>/export.json", views.export_json, name="export_json"),
]
