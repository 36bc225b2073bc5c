import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Conversations as trees: each message's parent, the child shown last under it, and
    the conversation's shown leaf. Filled from `superseded_at` by 0006."""

    dependencies = [
        ("conversations", "0004_verbose_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="conversations.message",
                verbose_name="parent",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="shown_child",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="conversations.message",
                verbose_name="child shown last",
            ),
        ),
        migrations.AddField(
            model_name="conversation",
            name="shown_leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="conversations.message",
                verbose_name="last message shown",
            ),
        ),
    ]
