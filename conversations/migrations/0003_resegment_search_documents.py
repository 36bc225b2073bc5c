"""Re-segment indexed CJK text: each run now also ends with its last character on its own,
so a one-character query finds that character at the end of a run (see search.segment)."""

from django.db import migrations

BATCH = 500


def resegment(apps, schema_editor):
    from conversations.search import CJK_RUN, segment

    SearchDocument = apps.get_model("conversations", "SearchDocument")
    # Ids first, then batches: SQLite must not iterate a table while it is being updated.
    ids = list(SearchDocument.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        changed = []
        batch = SearchDocument.objects.filter(pk__in=ids[start : start + BATCH]).select_related(
            "message", "conversation"
        )
        for document in batch:
            source = (
                document.message.content if document.message_id else document.conversation.title
            )
            if not CJK_RUN.search(source):
                continue
            body = segment(source)
            if body != document.body:
                document.body = body
                changed.append(document)
        # The triggers (SQLite) and the generated column (PostgreSQL) update the index.
        SearchDocument.objects.bulk_update(changed, ["body"])


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0002_search_documents"),
    ]

    operations = [
        migrations.RunPython(resegment, migrations.RunPython.noop),
    ]
