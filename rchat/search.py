"""Search in any script: a substring lookup the trigram indexes serve, and snippets.

Thai has no spaces between words, so rchat searches for the text typed anywhere in a
message (a substring, any case), never for words. On PostgreSQL, migration 0009 adds
pg_trgm GIN indexes on the searched columns; ``Contains`` compiles to ``ILIKE``, which
those indexes serve. Django's own ``icontains`` compiles to ``UPPER(col) LIKE
UPPER(...)`` there, which no index on ``col`` serves: every search would read every
message. On other databases ``Contains`` is ``icontains`` (a plain scan).

A trigram index needs three characters in a row to look up: a shorter query
(``can_search_messages`` is False) would read the whole index, so callers search
only what is small (rooms' names) for it.
"""

import re
import unicodedata

from django.db.models import F, Lookup
from django.db.models.lookups import IContains
from django.utils.html import escape
from django.utils.safestring import mark_safe

#: Letters or digits in a row a query needs before message text is searched.
MIN_RUN = 3
#: Characters of a message a snippet shows around the first match.
SNIPPET_CHARS = 120
#: Thai vowels written before the consonant they follow in speech: never end a cut.
_LEADING_VOWELS = frozenset("เแโใไ")


class Contains(IContains):
    """``field`` holds ``value`` (any case, ``%`` and ``_`` literal): ILIKE on
    PostgreSQL, for the trigram indexes; ``icontains`` elsewhere.

    Use it as an expression: ``Message.objects.filter(Contains(F("text"), q))``.
    """

    def as_postgresql(self, compiler, connection):
        # Lookup's own process_lhs: without the UPPER(col::text) of icontains.
        lhs_sql, lhs_params = Lookup.process_lhs(self, compiler, connection)
        # PatternLookup's process_rhs escapes \, % and _ and wraps the value in %...%.
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs_sql} ILIKE {rhs_sql}", (*lhs_params, *rhs_params)


def contains(field, value):
    """``Contains`` on the field named ``field`` (``"text"``, ``"room__chat_id"``)."""
    return Contains(F(field), value)


def _word_char(char):
    # What pg_trgm counts as a word's character in a Unicode locale: letters, digits,
    # and the combining vowel and tone marks written on them (Thai's are category Mn).
    return unicodedata.category(char)[0] in "LMN"


def can_search_messages(q):
    """Whether ``q`` has ``MIN_RUN`` letters or digits in a row: enough for the trigram
    index (a shorter query is answered from rooms' names only)."""
    run = longest = 0
    for char in q:
        run = run + 1 if _word_char(char) else 0
        longest = max(longest, run)
    return longest >= MIN_RUN


def _is_mark(char):
    return unicodedata.category(char).startswith("M")


def _whole(text, start, end):
    """``start, end`` widened so no combining mark is parted from its base character."""
    while start > 0 and start < len(text) and _is_mark(text[start]):
        start -= 1
    while end < len(text) and _is_mark(text[end]):
        end += 1
    return start, end


def match_spans(text, q):
    """``(start, end)`` of every match of ``q`` in ``text`` (any case), each widened to
    whole characters (a Thai consonant with its vowel and tone marks), merged where
    they touch."""
    q = " ".join((q or "").split())
    if not q or not text:
        return []
    spans = []
    for found in re.finditer(re.escape(q), text, re.IGNORECASE):
        start, end = _whole(text, found.start(), found.end())
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def _cut_start(text, start):
    """Where a snippet starting near ``start`` begins: after a space close by if there
    is one, never on a combining mark."""
    if start <= 0:
        return 0
    space = text.rfind(" ", max(0, start - 12), start)
    if space != -1:
        return space + 1
    return _whole(text, start, start)[0]


def _cut_end(text, end):
    if end >= len(text):
        return len(text)
    space = text.find(" ", end, end + 12)
    if space != -1:
        return space
    end = _whole(text, end, end)[1]
    while end > 0 and text[end - 1] in _LEADING_VOWELS:
        end -= 1
    return end


def snippet(text, q, *, width=SNIPPET_CHARS):
    """HTML: about ``width`` characters of ``text`` around its first match of ``q``,
    each match in ``<mark>``, everything else escaped, "…" where it was cut.

    Thai-safe: a cut or a mark never parts a base character from its combining marks.
    Line breaks become spaces. Without a match (a case only the database folds), the
    start of the text.
    """
    text = " ".join((text or "").split())
    spans = match_spans(text, q)
    if spans:
        first_start, first_end = spans[0]
        room = max(0, width - (first_end - first_start))
        start = max(0, first_start - room // 3)
        end = min(len(text), max(first_end, start + width))
    else:
        start, end = 0, min(len(text), width)
    start, end = _cut_start(text, start), _cut_end(text, end)
    if spans:
        # The first match is always shown whole, whatever the cuts.
        start, end = min(start, spans[0][0]), max(end, spans[0][1])
    parts = ["…"] if start > 0 else []
    at = start
    for span_start, span_end in spans:
        if span_end <= start or span_start >= end:
            continue
        span_start, span_end = max(span_start, start), min(span_end, end)
        parts.append(escape(text[at:span_start]))
        parts.append(f"<mark>{escape(text[span_start:span_end])}</mark>")
        at = span_end
    parts.append(escape(text[at:end]))
    if end < len(text):
        parts.append("…")
    return mark_safe("".join(parts))  # noqa: S308  every piece of the text is escaped
