"""Search: trigram indexes over message text and room names, on PostgreSQL only.

Thai is written without spaces between words, so full-text search by words finds
nothing in it; pg_trgm's GIN indexes serve ``ILIKE '%...%'`` whatever the script
(rchat.search.Contains is the lookup that uses them). On other databases this
migration does nothing: search there is a plain scan.

The indexes are built with CREATE INDEX CONCURRENTLY, so a site with millions of
messages keeps receiving webhooks while they build (a plain CREATE INDEX would block
every insert into rchat_message for the whole build); that is why this migration is
not atomic. See docs/deployment.md, "Search indexes".

Self-contained on purpose: django.contrib.postgres would need psycopg installed even
on SQLite, and the operation must not change with later versions of rchat's code.
"""

from django.db import migrations
from django.db.migrations.operations.base import Operation

#: (index name, table, column): what the inbox, the API and admin search.
TRIGRAM_INDEXES = [
    ("rchat_msg_text_trgm", "rchat_message", "text"),
    ("rchat_room_name_trgm", "rchat_chatroom", "display_name"),
    ("rchat_room_chat_id_trgm", "rchat_chatroom", "chat_id"),
]


class TrigramIndexes(Operation):
    """pg_trgm and GIN trigram indexes on PostgreSQL; nothing elsewhere.

    Changes no model state: the indexes are not in any model's Meta (a GinIndex there
    would break migrations on SQLite), so makemigrations never sees them.
    """

    reversible = True
    reduces_to_sql = True

    def __init__(self, indexes):
        self.indexes = indexes

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return
        quote = schema_editor.quote_name
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            if cursor.fetchone() is None:
                # A trusted extension since PostgreSQL 13: the owner of the database
                # (or anyone with CREATE on it) may create it. If not, a superuser
                # runs this once and the migration then skips it.
                schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            for name, table, column in self.indexes:
                # A concurrent build that failed leaves an invalid index behind, which
                # IF NOT EXISTS would keep: drop it and build again.
                cursor.execute(
                    "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.relname = %s",
                    [name],
                )
                row = cursor.fetchone()
                if row and row[0]:
                    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}")
                schema_editor.execute(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)}"
                    f" ON {quote(table)} USING gin ({quote(column)} gin_trgm_ops)"
                )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return
        # The extension stays: other apps of the site may use it.
        for name, _table, _column in self.indexes:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")

    def describe(self):
        return "Trigram indexes for search (PostgreSQL only)"

    def deconstruct(self):
        return (self.__class__.__name__, [self.indexes], {})


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("rchat", "0008_notes_attachments"),
    ]

    operations = [
        TrigramIndexes(TRIGRAM_INDEXES),
    ]
