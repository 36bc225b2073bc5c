"""Replies keep their rendered HTML (issue 22: render once, never on a page view).

The fields, then every final reply stored so far rendered by today's renderer, in
batches (a long history does not hold every row in memory). Later renderer changes are
`manage.py rerender_messages`.
"""

from typing import Any

from django.db import migrations, models

BATCH = 500


def render_stored_replies(apps: Any, schema_editor: Any) -> None:
    from conversations import rendering

    Message = apps.get_model("conversations", "Message")
    replies = (
        Message.objects.filter(role="assistant", html_version=0)
        .exclude(status="streaming")
        .order_by("pk")
    )
    last = 0
    while batch := list(replies.filter(pk__gt=last).only("pk", "content")[:BATCH]):
        for message in batch:
            message.html = rendering.render_markdown(message.content)
            message.html_version = rendering.VERSION
        Message.objects.bulk_update(batch, ["html", "html_version"])
        last = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0012_conversation_pin_archive"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="html",
            field=models.TextField(blank=True, editable=False, verbose_name="rendered HTML"),
        ),
        migrations.AddField(
            model_name="message",
            name="html_version",
            field=models.PositiveSmallIntegerField(
                default=0, editable=False, verbose_name="renderer version"
            ),
        ),
        migrations.RunPython(render_stored_replies, migrations.RunPython.noop, elidable=True),
    ]
