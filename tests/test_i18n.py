"""rchat ships Thai: every string of the catalogue is translated and compiled."""

import gettext
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rchat

LOCALE = Path(rchat.__file__).parent / "locale"
PO = LOCALE / "th" / "LC_MESSAGES" / "django.po"
# The demo project's own strings (its sign-in note).
PROJECT_PO = (
    Path(__file__).resolve().parent.parent
    / "project"
    / "locale"
    / "th"
    / "LC_MESSAGES"
    / "django.po"
)
MO = LOCALE / "th" / "LC_MESSAGES" / "django.mo"


def _entries(text):
    """(msgid, msgstr, flags) of each entry of a .po file, the header left out."""
    entries = []
    for block in text.split("\n\n"):
        flags = " ".join(re.findall(r"^#, (.*)$", block, re.M))
        msgid = "".join(re.findall(r'"(.*)"', _part(block, "msgid")))
        msgstr = "".join(re.findall(r'"(.*)"', _part(block, "msgstr")))
        if msgid:
            entries.append((msgid, msgstr, flags))
    return entries


def _part(block, keyword):
    match = re.search(rf"^{keyword}(?:\[0\])? (.*?)(?=^msg|\Z)", block, re.M | re.S)
    return match.group(1) if match else ""


@pytest.mark.parametrize("po, at_least", [(PO, 100), (PROJECT_PO, 1)], ids=["rchat", "project"])
def test_every_thai_string_is_translated_and_none_is_fuzzy(po, at_least):
    entries = _entries(po.read_text(encoding="utf-8"))
    assert len(entries) >= at_least
    assert [msgid for msgid, msgstr, _ in entries if not msgstr] == []
    assert [msgid for msgid, _, flags in entries if "fuzzy" in flags] == []


def test_the_compiled_catalogue_matches_the_po_file():
    """A .po edited without `make messages` would ship stale Thai."""
    with MO.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog
    for msgid, _msgstr, _ in _entries(PO.read_text(encoding="utf-8")):
        key = msgid.encode().decode("unicode_escape").encode("latin-1").decode()
        found = catalog.get(key) or catalog.get((key, 0))
        assert found is not None, f"not compiled: {msgid!r}"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="needs GNU gettext (xgettext)")
def test_no_string_in_the_code_is_missing_from_the_catalogue(tmp_path):
    """makemessages on the code finds nothing the Thai catalogue lacks."""
    app = tmp_path / "rchat"
    shutil.copytree(Path(rchat.__file__).parent, app, ignore=shutil.ignore_patterns("*.pyc"))
    # The django-admin script, not `python -m django`: run from inside the app, the
    # latter would put rchat/selectors.py in front of the standard library's.
    django_admin = Path(sys.executable).parent / "django-admin"
    run = subprocess.run(  # noqa: S603 - our own venv's django-admin, fixed arguments
        [str(django_admin), "makemessages", "-l", "th", "--no-obsolete"],
        cwd=app,
        # Without settings makemessages reads only the files (no project to import).
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    before = {m for m, _, _ in _entries(PO.read_text(encoding="utf-8"))}
    after = {m for m, _, _ in _entries((app / PO.relative_to(PO.parents[3])).read_text("utf-8"))}
    assert sorted(after - before) == []


# --- The pages themselves, in Thai ------------------------------------------------------

# What may stay in Latin letters on a page in Thai: names of products and companies,
# protocols and formats, and the keys of the keyboard shortcuts.
ALLOWED_WORDS = set(
    """
    R-Chat Chatday Chatday-Token Chatday-Signature-Token LINE Facebook Instagram Messenger
    WhatsApp TikTok Shopee Lazada Django API URL URLs ID id HTTP HTTPS https JSON OpenAPI
    Swagger REST CSV Enter Shift Ctrl Control Command Esc Mac OK Tab PNG JPEG PDF GIF MB KB
    webhook worker jpg png gif webp pdf txt csv zip docx xlsx
    """.split()  # noqa: SIM905 - a list of words reads best as words
)
# Not words of a sentence: a masked token (••••5VBh), an @mention, an RCHAT setting's name,
# and Django's search icon, whose alt="Search" its template does not translate.
_CODE = re.compile(r'•+\w+|@\w+|RCHAT\["\w+"\]|<img src="[^"]*/search\.svg" alt="Search">')
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<!--.*?-->|<[^>]+>", re.S | re.I)
_ATTRIBUTES = re.compile(r'\s(?:placeholder|title|aria-label|alt)="([^"]*)"', re.I)
_URLS = re.compile(
    r"\b(?:https?|mailto)://\S+|\b[\w.+-]+@[\w-]+\.[\w.]+|\b[\w-]+\.(?:png|jpg|pdf)\b"
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")  # noqa: RUF001


def _english_left(html, allowed):
    """The Latin-letter words a reader sees on ``html`` (its text, and what its
    placeholders, titles, labels for screen readers and alt texts say), less ``allowed``."""
    import html as html_module

    html = _CODE.sub(" ", html)
    attributes = " ".join(_ATTRIBUTES.findall(html))
    text = html_module.unescape(_TAGS.sub(" ", html) + " " + attributes)
    text = _URLS.sub(" ", text)
    return sorted({w for w in _WORD.findall(text) if w not in allowed and len(w) > 1})


def _other_apps_words():
    """The words of the names other apps give themselves and their models on admin's
    index (Axes' "Access attempts"): theirs to translate, not rchat's."""
    from django.apps import apps

    names = []
    for config in apps.get_app_configs():
        if config.name == "rchat" or config.name.startswith("django."):
            continue
        names.append(str(config.verbose_name))
        names += [str(m._meta.verbose_name_plural) for m in config.get_models()]
    words = set(_WORD.findall(" ".join(names)))
    return words | {word.capitalize() for word in words}


@pytest.fixture
def thai_pages(client, settings):
    """Every main page of the inbox and admin, with a conversation holding every type
    of message, a private note and an @mention, fetched with Thai chosen; and the words
    the data itself puts on them (names, ids)."""
    from django.urls import reverse

    from rchat import services
    from tests.factories import ChatRoomFactory, CredentialFactory, MessageFactory, UserFactory

    operator = UserFactory(username="boss", first_name="สมชาย", is_superuser=True)
    UserFactory(username="malee", first_name="มาลี", is_superuser=True)
    credential = CredentialFactory(name="ร้านค้า")
    room = ChatRoomFactory(credential=credential, chat_id="c-1", display_name="สมหญิง")
    MessageFactory(room=room, data="สวัสดีค่ะ สั่งของได้ไหม")
    MessageFactory(room=room, type="image", data={"url": "https://img.example/a.png"})
    MessageFactory(room=room, type="file", data={"url": "https://img.example/b.pdf"})
    MessageFactory(room=room, type="sticker", data={"packageId": "1", "stickerId": "2"})
    MessageFactory(room=room, type="location", data={"latitude": 13.7, "longitude": 100.5})
    MessageFactory(room=room, type="poll", data={"question": "?"})
    MessageFactory(room=room, direction="out", data="ได้ค่ะ", status="sent", sender="person")
    MessageFactory(room=room, direction="out", data="ส่งไม่ได้", status="failed")
    services.note_add(room=room, author=operator, body="ช่วยดูหน่อย @malee")
    client.force_login(operator)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "th"
    urls = [
        reverse("rchat:inbox"),
        reverse("rchat:inbox-room", args=[room.pk]),
        reverse("rchat:inbox-search") + "?q=สวัสดี",
        reverse("rchat:inbox-mentions"),
        reverse("admin:index"),
        reverse("admin:rchat_chatroom_changelist"),
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
        reverse("admin:rchat_credential_change", args=[credential.pk]),
        reverse("admin:rchat_message_changelist"),
    ]
    pages = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode()
    client.logout()  # which forgets the cookies
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "th"
    response = client.get(reverse("rchat:login"))
    assert response.status_code == 200
    pages[reverse("rchat:login")] = response.content.decode()
    # What the data puts there: usernames, an unknown type and its data,
    # the language switch's languages, each in its own language ("English"), and the
    # command the demo's sign-in note names (make run).
    data_words = {"boss", "malee", "poll", "question", "English", "make", "run"}
    return pages, data_words


@pytest.mark.django_db
def test_the_main_pages_in_thai_show_no_english_words(thai_pages):
    """Every string a reader sees on the inbox, the sign-in page and rchat's admin pages
    is Thai with Thai chosen: an English one means a string that is not translated, not
    marked for translation, or missing from Django's own Thai."""
    pages, data_words = thai_pages
    allowed = ALLOWED_WORDS | data_words | _other_apps_words()
    left = {url: words for url, html in pages.items() if (words := _english_left(html, allowed))}

    assert left == {}, "English on pages in Thai:\n" + "\n".join(
        f"{url}: {' '.join(words)}" for url, words in left.items()
    )


def test_the_page_check_finds_english_text_placeholders_and_labels():
    """The check itself sees what a reader sees, and only that."""
    html = (
        '<html><head><style>.x{color:red}</style><script>var a = "Hidden";</script></head>'
        '<body><p>สวัสดี Hello</p><input placeholder="Type here"><a href="/x" '
        'title="ลิงก์">https://r-chat.example/path R-Chat</a><!-- a comment --></body></html>'
    )

    assert _english_left(html, ALLOWED_WORDS) == ["Hello", "Type", "here"]


# --- The language switch ----------------------------------------------------------------


@pytest.mark.django_db
def test_choosing_a_language_is_remembered_and_leads_back(client, settings):
    """Anyone, signed in or not, may choose; Django's language cookie keeps the choice,
    and the next page is in it."""
    from django.urls import reverse

    response = client.post(reverse("rchat:language"), {"language": "th", "next": "/rchat/login/"})

    assert response.status_code == 302
    assert response["Location"] == "/rchat/login/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "th"
    page = client.get("/rchat/login/")
    assert '<html lang="th">' in page.content.decode()
    assert "เข้าสู่ระบบกล่องข้อความ" in page.content.decode()


@pytest.mark.django_db
def test_a_language_the_site_does_not_offer_is_refused_with_a_reason(client, settings):
    from django.urls import reverse

    response = client.post(reverse("rchat:language"), {"language": "fr", "next": "/"})

    assert response.status_code == 400
    assert "“fr” is not one of this site's languages." in response.content.decode()
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    assert client.get(reverse("rchat:language")).status_code == 405


@pytest.mark.django_db
def test_the_language_switch_does_not_lead_to_another_site(client):
    from django.urls import reverse

    response = client.post(
        reverse("rchat:language"), {"language": "th", "next": "https://evil.example/"}
    )

    assert response.status_code == 302
    assert "evil.example" not in response["Location"]


@pytest.mark.django_db
def test_the_switch_offers_the_sites_languages_in_their_own_names(client, settings):
    settings.LANGUAGES = [("en", "English"), ("th", "Thai")]
    page = client.get("/rchat/login/").content.decode()

    assert '<option value="en" lang="en" selected>English</option>' in page
    assert '<option value="th" lang="th">ภาษาไทย</option>' in page


@pytest.mark.django_db
def test_no_switch_without_locale_middleware_and_a_check_says_why(client, settings):
    from django.core.checks import run_checks

    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "django.middleware.locale.LocaleMiddleware"
    ]

    assert 'name="language"' not in client.get("/rchat/login/").content.decode()
    warnings = [m for m in run_checks(tags=["translation"]) if m.id == "rchat.W008"]
    assert len(warnings) == 1
    assert "LocaleMiddleware" in warnings[0].hint


def test_the_locale_middleware_check_is_quiet_for_a_site_of_one_language(settings):
    from django.core.checks import run_checks

    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "django.middleware.locale.LocaleMiddleware"
    ]
    settings.LANGUAGES = [("en", "English")]

    assert [m for m in run_checks(tags=["translation"]) if m.id == "rchat.W008"] == []


# --- Admin's own strings ------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_scripts_get_rchats_thai_for_what_djangos_lacks(client, settings):
    """rchat's script catalogue holds only what it translates: "%(sel)s of %(cnt)s
    selected" in Thai; nothing in English, so admin's own catalogue stays as it is."""
    from django.urls import reverse

    from tests.factories import UserFactory

    client.force_login(UserFactory(is_superuser=True))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "th"
    thai = client.get(reverse("rchat:admin-jsi18n")).content.decode()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    english = client.get(reverse("rchat:admin-jsi18n")).content.decode()
    chat_rooms = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()

    assert '"%(sel)s of %(cnt)s selected": [\n' in thai
    assert json.dumps("เลือก %(sel)s จาก %(cnt)s") in thai  # as the catalogue escapes it
    assert "newcatalog" not in english
    assert f'<script src="{reverse("rchat:admin-jsi18n")}"></script>' in chat_rooms
