"""The auto-reply rules staff edit in admin, and how an end user's text is matched.

Thai is written without spaces between words, and people type the same words with or
without spaces, zero-width characters (pasted from LINE or a web page), punctuation,
Thai or Arabic digits, full-width or upper-case Latin. Matching therefore compares
*normalized* forms (``normalize``): letters, marks and digits only, case folded.
"ขอ คุยกับ พนักงาน ค่ะ" contains "คุยกับพนักงาน"; "Talk to a PERSON!!" contains "talk
to a person".

Nothing is cached between calls: the rules are read on each call (a handful of rows),
so a rule changed in admin applies to the very next message.
"""

import re
import unicodedata
from dataclasses import dataclass

from django.db.models import Q
from django.utils.translation import gettext as _

from ..conf import get_setting
from ..models import AutoReply
from ..payloads import short

#: How much of the end user's text a "why" sentence quotes.
QUOTE_LENGTH = 60

# normalize() applies its steps until nothing changes; two rounds settle every string
# met in practice (a removed character can let NFKC compose its neighbours), the bound
# only guards against a pathological one.
_NORMALIZE_ROUNDS = 4


def _normalize_once(text):
    # NFKC folds compatibility forms (full-width Latin, circled digits, the Thai SARA AM
    # against NIKHAHIT + SARA AA typed apart); casefold is Unicode's caseless match;
    # NFKC again because casefold can leave a string unnormalized.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Nd":
            # Any decimal digit (Thai U+0E50 to U+0E59, Arabic-Indic …) as its ASCII digit.
            kept.append(str(unicodedata.decimal(char)))
        elif category[0] in "LM":
            # Letters of every script, and marks (the Thai vowel and tone marks are Mn).
            kept.append(char)
        # Everything else goes: separators and whitespace (Z*, and \t \n are Cc),
        # zero-width characters (U+200B to U+200D and U+FEFF are Cf), punctuation (P*),
        # symbols (S*: emoji, ฿, +).
    # Removing a character can leave a base letter next to a mark it composes with.
    return unicodedata.normalize("NFKC", "".join(kept))


def normalize(text):
    """``text`` reduced to what matching compares: letters, marks and digits, case folded.

    NFKC, casefold, whitespace, zero-width characters, punctuation and symbols removed,
    every decimal digit (Thai ones included) as 0 to 9. Idempotent.
    """
    text = str(text or "")
    for _round in range(_NORMALIZE_ROUNDS):
        normalized = _normalize_once(text)
        if normalized == text:
            break
        text = normalized
    return text


def phrase_in(phrase, text):
    """Whether ``phrase`` occurs in ``text``, compared on normalized forms.

    A phrase with nothing left once normalized (empty, or only punctuation) never matches.
    """
    wanted = normalize(phrase)
    return bool(wanted) and wanted in normalize(text)


def asks_for_person(text):
    """The first of RCHAT["HANDOVER_PHRASES"] found in ``text`` (as configured), else None."""
    normalized = normalize(text)
    for phrase in get_setting("HANDOVER_PHRASES") or ():
        wanted = normalize(phrase)
        if wanted and wanted in normalized:
            return phrase
    return None


@dataclass(frozen=True)
class RuleMatch:
    """The rule that answers a message, and why in one translated sentence."""

    rule: AutoReply
    why: str


@dataclass(frozen=True)
class RuleCheck:
    """One rule as the try-it box shows it: did it match, why (not), does it answer."""

    rule: AutoReply
    matched: bool
    why: str
    answers: bool = False


def keywords(match):
    """The keywords of a keyword rule's ``match``: its non-empty lines, stripped."""
    return [line.strip() for line in (match or "").splitlines() if line.strip()]


def pattern_error(pattern):
    """Why ``pattern`` is not a usable regular expression ("" when it is): it does not
    compile, or it repeats a repetition (``(a+)+``, ``(\\w+\\s?)*`` …), the shape that
    can backtrack for minutes on one message. Python's ``re`` has no time limit, so
    such a pattern is refused in admin and never run (a possessive ``++`` or an atomic
    group ``(?>…)`` is accepted: it does not backtrack)."""
    if not (pattern or "").strip():
        return _("A pattern rule needs a regular expression.")
    try:
        re.compile(pattern, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as exc:
        return _("Not a valid regular expression: %(error)s.") % {"error": exc}
    if _repeats_a_repetition(pattern):
        return _(
            "The pattern repeats a repetition (like (a+)+), which can take minutes on some "
            "messages: write it without the nested repetition, or make the outer one "
            "possessive (++, *+)."
        )
    return ""


def _repeats_a_repetition(pattern):
    # The parse tree of re itself (re._parser, sre_parse before 3.11). Private, so a
    # change in it disables this check rather than breaking the rules.
    try:
        from re import _constants as codes
        from re import _parser as parser
    except ImportError:  # pragma: no cover - Python before 3.11
        return False
    try:
        tree = parser.parse(pattern, re.IGNORECASE)
    except Exception:  # pragma: no cover - compiled above; a changed parser only
        return False
    repeats = {codes.MAX_REPEAT, codes.MIN_REPEAT}

    def walk(items, inside):
        for op, value in items:
            if op in repeats:
                many = value[1] == codes.MAXREPEAT or value[1] > 10
                if inside and many:
                    return True
                nested = [(value[2], inside or many)]
            elif op == codes.POSSESSIVE_REPEAT:
                nested = [(value[2], False)]  # never backtracked into
            elif op == codes.ATOMIC_GROUP:
                nested = [(value, False)]
            elif op == codes.SUBPATTERN:
                nested = [(value[3], inside)]
            elif op == codes.BRANCH:
                nested = [(branch, inside) for branch in value[1]]
            elif op in (codes.ASSERT, codes.ASSERT_NOT):
                nested = [(value[1], inside)]
            elif op == codes.GROUPREF_EXISTS:
                nested = [(branch, inside) for branch in value[1:] if branch is not None]
            else:
                nested = []
            if any(walk(sub, flag) for sub, flag in nested):
                return True
        return False

    try:
        return walk(tree, False)
    except Exception:  # pragma: no cover - a changed parse tree
        return False


def active_rules(*, credential_id):
    """Active rules of ``credential_id`` and those for every credential, in order."""
    return list(
        AutoReply.objects.filter(active=True)
        .filter(Q(credential_id=credential_id) | Q(credential__isnull=True))
        .order_by("position", "id")
    )


def _check(rule, text, normalized, first_message):
    """(matched, why) for one rule against a text and its normalized form."""
    quoted = short(" ".join(text.split()), QUOTE_LENGTH)
    if rule.kind == AutoReply.Kind.GREETING:
        if first_message:
            return True, _("greeting: first message of a new chat room")
        return False, _("greeting: only the first message of a new chat room gets it")
    if rule.kind == AutoReply.Kind.KEYWORD:
        words = keywords(rule.match)
        for word in words:
            wanted = normalize(word)
            if wanted and wanted in normalized:
                return True, _("keyword “%(keyword)s” found in “%(text)s”") % {
                    "keyword": word,
                    "text": quoted,
                }
        if not words:
            return False, _("no keywords")
        return False, _("none of the keywords %(keywords)s found") % {
            "keywords": ", ".join(f"“{word}”" for word in words)
        }
    if rule.kind == AutoReply.Kind.PATTERN:
        error = pattern_error(rule.match)
        if error:
            return False, error
        # Python's re has no time limit: a pattern that backtracks badly is bounded by
        # the length of what it searches (see rule_for), and admin refuses one that
        # does not compile.
        found = re.search(rule.match, text, re.IGNORECASE)
        if found:
            return True, _("pattern “%(pattern)s” matched “%(found)s”") % {
                "pattern": rule.match,
                "found": short(found.group(0), QUOTE_LENGTH),
            }
        found = re.search(rule.match, normalized, re.IGNORECASE)
        if found:
            return True, _(
                "pattern “%(pattern)s” matched “%(found)s” in the text without spaces "
                "and punctuation"
            ) % {"pattern": rule.match, "found": short(found.group(0), QUOTE_LENGTH)}
        return False, _("pattern “%(pattern)s” not found") % {"pattern": rule.match}
    return False, _("unknown kind of rule %(kind)r") % {"kind": rule.kind}


def _prepare(text):
    # Only the first RCHAT["TEXT_MAX_LENGTH"] characters are matched: that bounds the
    # time a regular expression can take, whatever its shape and the text's length.
    text = str(text or "")[: get_setting("TEXT_MAX_LENGTH")]
    return text, normalize(text)


def rule_for(*, credential_id, text, first_message):
    """The first active rule (of ``credential_id`` or for every credential, by position
    then id) that matches ``text``, as a ``RuleMatch``; None when none does.

    Greetings match any text, only when ``first_message`` (the first message of a new
    chat room); keyword rules when any of their lines occurs in the text (``phrase_in``);
    pattern rules when their regular expression is found (case ignored) in the text or
    in its normalized form. A pattern that does not compile never matches.
    """
    text, normalized = _prepare(text)
    for rule in active_rules(credential_id=credential_id):
        matched, why = _check(rule, text, normalized, first_message)
        if matched:
            return RuleMatch(rule=rule, why=why)
    return None


def rules_explain(*, credential_id, text, first_message):
    """Every active rule for ``credential_id``, in order, as a ``RuleCheck``: whether it
    matches ``text`` and why (not). The first that matches has ``answers`` set: it is
    the one ``rule_for`` returns."""
    text, normalized = _prepare(text)
    checks, answered = [], False
    for rule in active_rules(credential_id=credential_id):
        matched, why = _check(rule, text, normalized, first_message)
        checks.append(
            RuleCheck(rule=rule, matched=matched, why=why, answers=matched and not answered)
        )
        answered = answered or matched
    return checks
