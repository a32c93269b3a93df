"""How a private note is drawn, in admin and in the inbox alike: its text, with the
people it mentions marked.

Only the names the note really mentions are marked (its ``Mention`` rows, read with
``selectors.note_list``): an unknown ``@name`` stays plain text, as it did when the
note was written.
"""

from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from ..services.notes import mention_candidates, mention_tokens


def note_body_html(note, *, viewer=None):
    """``note.body`` as HTML: escaped, each real mention in ``<mark class="rchat-mention">``
    (with ``is-you`` when it mentions ``viewer``). Keep the line breaks with CSS
    (``white-space: pre-wrap``)."""
    mentioned = {}
    for mention in note.mentions.all():
        mentioned.setdefault(mention.user.get_username().lower(), mention.user)
    body = note.body
    parts, last = [], 0
    for start, end, name in mention_tokens(body):
        found = next((c for c in mention_candidates(name) if c.lower() in mentioned), None)
        if found is None:
            continue
        end = start + 1 + len(found)
        user = mentioned[found.lower()]
        you = viewer is not None and user.pk == viewer.pk
        parts.append(escape(body[last:start]))
        parts.append(
            format_html(
                '<mark class="rchat-mention{}">{}</mark>', " is-you" if you else "", body[start:end]
            )
        )
        last = end
    parts.append(escape(body[last:]))
    return mark_safe("".join(str(part) for part in parts))  # noqa: S308 - every part escaped
