"""rchat's REST API for agents' tools and bots (mounted at ``api/`` in rchat.urls)."""
