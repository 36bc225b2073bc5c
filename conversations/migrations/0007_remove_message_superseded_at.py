from django.db import migrations


class Migration(migrations.Migration):
    """The tree (0005, 0006) replaces `superseded_at`: a previous version is a sibling."""

    dependencies = [
        ("conversations", "0006_versions_from_superseded"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="message",
            name="superseded_at",
        ),
    ]
