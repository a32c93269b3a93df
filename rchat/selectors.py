"""Read queries for the webhook, inbox, API and admin (one query per list, no N+1)."""
