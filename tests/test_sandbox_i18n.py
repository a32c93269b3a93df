"""The sandbox's pages in English and Thai: the language is chosen by ``?lang=``, then
the sandbox's cookie, then the browser's Accept-Language; a switch on every page sets
it and it is remembered; every word of the page (its script's too) is in that language;
outside a Django project the pages are English. Times are written as rchat.ui.when
writes them in that language.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import requests
from django.utils import timezone, translation

from rchat.client import RChatClient
from rchat.sandbox import Sandbox, chat_url, i18n
from rchat.sandbox import server as sandbox_server
from rchat.ui import when
from tests.test_when import BANGKOK, SANDBOX_CASES

TOKEN = "cdt_sandbox_i18n_token_0001"
THAI_ACCEPT = "th-TH,th;q=0.9,en;q=0.8"


def _untranslated():
    """The sandbox's words rchat's Thai catalogue does not have yet."""
    english, thai = i18n.texts("en"), i18n.texts("th")
    return sorted(
        english[key]
        for key in english
        if isinstance(english[key], str) and english[key] == thai[key]
    ) + sorted(v for k, v in english["info"].items() if v == thai["info"][k])


def _needs_thai():
    # rchat/locale is filled in after the code (make messages): until then the Thai of
    # the new words cannot be checked, and tests/test_i18n.py says they are missing.
    missing = _untranslated()
    if missing:
        pytest.skip(
            f"rchat's Thai catalogue lacks {len(missing)} sandbox word(s), e.g. {missing[0]!r}"
        )


@pytest.fixture
def sb():
    with Sandbox(port=0, tokens=[TOKEN]) as running:
        yield running


def _lang(page_text):
    return re.search(r'<html lang="(\w+)">', page_text)[1]


# --- Which language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "language", "remember"),
    [
        (None, None, None, "en", False),  # nothing said: English
        (None, None, THAI_ACCEPT, "th", False),
        (None, None, "fr-FR, th;q=0.5, en;q=0.4", "th", False),  # the first it knows, by q
        (None, None, "en;q=0.2, th-TH;q=0.9", "th", False),
        (None, None, "th;q=0, en", "en", False),  # q=0: not wanted
        (None, None, "de, fr", "en", False),
        (None, "rchat_sandbox_language=th", "en-US", "th", False),  # the cookie over the browser
        (None, "other=1; rchat_sandbox_language=xx", THAI_ACCEPT, "th", False),  # junk cookie
        ("en", "rchat_sandbox_language=th", THAI_ACCEPT, "en", True),  # ?lang= over all
        (" TH ", None, None, "th", True),
    ],
)
def test_the_language_is_lang_then_the_cookie_then_accept_language(
    query, cookie, accept, language, remember
):
    assert i18n.choose_language(query, cookie, accept) == (language, remember)


def test_an_unknown_lang_is_refused_with_a_clear_reason(sb):
    for path in ("/?lang=fr", "/chat/c-1?lang=thai", "/chat/c-1?lang=en-GB"):
        response = requests.get(sb.url + path, timeout=5)
        assert response.status_code == 400, path
        assert response.json() == {"status": "ERROR", "reason": "lang must be one of en, th."}


def test_lang_in_the_url_is_remembered_for_every_page(sb):
    """?lang=th answers with the cookie; later pages without ?lang= keep Thai, although
    the browser asks for English; ?lang=en switches back."""
    browser = requests.Session()
    browser.headers["Accept-Language"] = "en-US,en;q=0.9"
    first = browser.get(chat_url(sb.url, "c-1") + "&lang=th", timeout=5)
    assert _lang(first.text) == "th"
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("rchat_sandbox_language=th;") and "Path=/" in cookie
    assert "Max-Age=31536000" in cookie and "SameSite=Lax" in cookie
    later = browser.get(sb.url + "/", timeout=5)
    assert _lang(later.text) == "th" and "Set-Cookie" not in later.headers
    assert _lang(browser.get(chat_url(sb.url, "c-2"), timeout=5).text) == "th"
    assert _lang(browser.get(sb.url + "/?lang=en", timeout=5).text) == "en"
    assert _lang(browser.get(sb.url + "/", timeout=5).text) == "en"


def test_the_switch_links_to_this_page_in_each_language(sb):
    """Each page links to itself with ?lang=, keeping its query (the chat's channel and
    name), the current language marked."""
    page = requests.get(
        chat_url(sb.url, "c-1", channel="line", name="สมชาย"),
        headers={"Accept-Language": THAI_ACCEPT},
        timeout=5,
    ).text
    nav = re.search(r'<nav class="languages"[^>]*>(.*?)</nav>', page)[1]
    links = re.findall(
        r'<a href="([^"]+)" hreflang="(\w+)" lang="\w+"( aria-current="true")?>', nav
    )
    name = "%E0%B8%AA%E0%B8%A1%E0%B8%8A%E0%B8%B2%E0%B8%A2"
    assert links == [
        (f"/chat/c-1?channel=line&amp;name={name}&amp;lang=en", "en", ""),
        (f"/chat/c-1?channel=line&amp;name={name}&amp;lang=th", "th", ' aria-current="true"'),
    ]
    assert ">English</a> · <a" in nav and ">ไทย</a>" in nav


# --- The words --------------------------------------------------------------------------


def test_the_page_s_script_gets_every_word_from_the_server(sb):
    """The words block is JSON that cannot close the <script> it sits in."""
    page = requests.get(sb.url + "/", timeout=5).text
    block = re.search(
        r'<script type="application/json" id="sandbox-texts">(.*?)</script>', page, re.S
    )[1]
    words = json.loads(block)
    assert words == json.loads(json.dumps(i18n.texts("en"), ensure_ascii=False))
    assert words["time"]["months_short"][8] == "Sep" and words["time"]["era_offset"] == 0
    assert "<" not in block and "&" not in block
    assert "\\u003c" in i18n.texts_json({"x": "</script><b>&"})


def test_the_thai_page_is_in_thai(sb):
    """Accept-Language th: lang="th", the page's own words in Thai, its script's Thai
    words, months and Buddhist era in the words block."""
    _needs_thai()
    page = requests.get(sb.url + "/", headers={"Accept-Language": THAI_ACCEPT}, timeout=5).text
    thai = i18n.texts("th")
    assert _lang(page) == "th"
    for key in ("sandbox", "tagline", "open_chat", "send_burst", "add_fault", "settings"):
        assert html_escape(thai[key]) in page, key
    assert "A stand-in for R-Chat" not in page and "Open chat" not in page
    words = json.loads(re.search(r'id="sandbox-texts">(.*?)</script>', page, re.S)[1])
    assert words["time"]["months"][11] == "ธันวาคม" and words["time"]["era_offset"] == 543
    assert words["webhook_delivered"] == thai["webhook_delivered"]


def html_escape(text):
    import html

    return html.escape(text, quote=True)


def test_the_thai_chat_page_arrives_with_its_thread_in_thai(sb):
    """The thread as served: Thai labels and notes; English on an English page."""
    _needs_thai()
    sb.webhook_url = "http://127.0.0.1:9/hook"  # nobody listens: "not delivered"
    sb.send_as_user("c-th", "มีไซส์ L ไหมคะ", name="สมหญิง")
    rchat = RChatClient(base_url=sb.url, token=TOKEN)
    rchat.send_message("c-th", "text", "มีค่ะ", sender={"kind": "rule", "name": "ไซส์"})
    rchat.send_message("c-th", "text", "รอสักครู่นะคะ", sender={"kind": "bot"})
    thai = requests.get(f"{sb.url}/chat/c-th", headers={"Accept-Language": "th"}, timeout=5).text
    words = i18n.texts("th")
    assert f'<div class="sender">⚙ {words["label_rule_named"] % {"name": "ไซส์"}}</div>' in thai
    assert f'<div class="sender">🤖 {words["label_bot"]}</div>' in thai
    assert f" · {words['from_the_site']}</div>" in thai
    assert f"<title>{words['chat_title'] % {'chat_id': 'c-th'}}</title>" in thai
    assert html_escape(words["chat_how"]) in thai and "You type as" not in thai
    english = requests.get(f"{sb.url}/chat/c-th", timeout=5).text
    assert (
        '<div class="sender">⚙ Rule: ไซส์</div>' in english and " · from the site</div>" in english
    )


# --- Times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "now", "_shown", "_title"), SANDBOX_CASES)
@pytest.mark.parametrize("language", ["en", "th"])
def test_the_sandbox_writes_times_as_the_site_does_in_each_language(
    at, now, _shown, _title, language
):
    """Thai months and Buddhist-era years in Thai ("2 ธ.ค. 2568"): the same text as
    rchat.ui.when, the inbox's and admin's rules."""
    moment = sandbox_server._parse_at(at)
    words = i18n.texts(language)["time"]
    with translation.override(language), timezone.override(BANGKOK):
        assert sandbox_server.when_text(moment, BANGKOK, now, words) == when.when_text(
            moment, now=now
        )
        assert sandbox_server.full_text(moment, BANGKOK, words) == when.full_text(moment)


def test_thai_times_have_thai_months_and_the_buddhist_era():
    words = i18n.texts("th")["time"]
    moment = sandbox_server._parse_at("2025-12-02T04:21:00.000Z")
    now = sandbox_server._parse_at("2026-12-03T07:05:00.000Z")
    assert sandbox_server.when_text(moment, BANGKOK, now, words) == "2 ธ.ค. 2568"
    assert sandbox_server.full_text(moment, BANGKOK, words) == "2 ธันวาคม 2568 11:21:00"


# --- Outside a Django project ----------------------------------------------------------


def test_outside_a_django_project_the_pages_are_english(tmp_path):
    """Sandbox() in a plain script (no settings): English, whatever is asked for."""
    script = textwrap.dedent(
        """
        import urllib.request
        from rchat.sandbox import Sandbox

        with Sandbox(port=0) as sb:
            for path in ("/?lang=th", "/chat/c-1"):
                request = urllib.request.Request(sb.url + path, headers={"Accept-Language": "th"})
                with urllib.request.urlopen(request, timeout=10) as answer:
                    print(answer.read().decode("utf-8"))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    run = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('<html lang="en">') == 2
    assert "A stand-in for R-Chat on this machine." in run.stdout
    assert "You type as the end user" in run.stdout
    assert '"months_short": ["Jan"' in run.stdout


# --- In Chromium -------------------------------------------------------------------------

#: What may stay in Latin letters on a Thai page: names of things (R-Chat and its API's
#: calls and headers), protocols, the example chat id.
THAI_PAGE_LATIN = {
    "R-Chat",
    "HTTP",
    "Retry-After",
    "Send",
    "Message",
    "Register",
    "URL",
    "idempotency",
    "customer-1",
    "shop-1",
}

# The words a reader sees: text, titles, placeholders, labels and the document's title,
# leaving out what is content or an id (messages, settings' values, chat ids, channels,
# names) and the switch's link to the other language.
UI_TEXT = """() => {
  const copy = document.body.cloneNode(true);
  copy.querySelectorAll(
    ".bubble, .sender, dd, h1, #user-name, b, select[name=channel], #chats td, " +
    "nav.languages a:not([aria-current])"
  ).forEach((node) => node.remove());
  copy.querySelectorAll("time").forEach((node) => node.remove());
  const named = "[title], [placeholder], [aria-label], [alt]";
  const attrs = [...document.querySelectorAll(named)]
    .flatMap((node) => ["title", "placeholder", "aria-label", "alt"]
      .map((a) => node.getAttribute(a)));
  return [document.title, copy.innerText, ...attrs.filter(Boolean)].join("\\n");
}"""


def _latin_words(text):
    return set(re.findall(r"[A-Za-z][A-Za-z0-9-]*", text))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "locale", "other"), [("en", "en-US", "th"), ("th", "th-TH", "en")]
)
def test_the_sandbox_speaks_the_browser_s_language_and_remembers_the_switch(
    chromium, httpserver, language, locale, other
):
    """A browser asking for English or Thai gets the index and chat pages in it, the
    script's words too (the faults, the settings, a delivered message, a reply's label,
    times); the switch turns both pages to the other language, and it stays so."""
    if language == "th":
        _needs_thai()
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    words = i18n.texts(language)
    with Sandbox(port=0, tokens=[TOKEN], webhook_url=httpserver.url_for("/hook")) as sb:
        sb.send_as_user("shop-1", "สวัสดีค่ะ มีเสื้อไซส์ M ไหมคะ", channel="line", name="สมหญิง")
        rchat = RChatClient(base_url=sb.url, token=TOKEN)
        rchat.send_message(
            "shop-1", "text", "มีค่ะ ราคา 590 บาท", sender={"kind": "rule", "name": "ราคา"}
        )
        sb.inject(latency_ms=5, share=0.5)
        context = chromium.new_context(locale=locale, timezone_id="Asia/Bangkok")
        try:
            page = context.new_page()
            page.goto(sb.url + "/")
            assert page.locator("html").get_attribute("lang") == language
            page.locator("#faults li").first.wait_for(timeout=15_000)
            page.locator("#info dt").first.wait_for(timeout=15_000)
            page.locator("#chats tbody tr").first.wait_for(timeout=15_000)
            assert page.locator("h1").inner_text() == words["sandbox"]
            assert (
                page.locator("#faults li")
                .inner_text()
                .endswith(words["fault_until_cleared_is"] % {"applied": 0})
            )
            assert page.locator("#info dt").first.inner_text() == words["info"]["url"]
            assert (
                page.locator("#chats tbody td")
                .nth(4)
                .inner_text()
                .startswith("⚙ " + words["label_rule_named"] % {"name": "ราคา"})
            )
            _check_words(page, language)

            page.click("#chats tbody a")
            page.wait_for_url("**/chat/shop-1**")
            note = page.locator("#thread li.user .meta")
            note.wait_for(timeout=15_000)
            assert note.inner_text().endswith(words["webhook_delivered"] % {"status": 200})
            rchat.send_message("shop-1", "text", "ส่งฟรีค่ะ", sender={"kind": "bot"})
            bot = page.locator("#thread li.sender-bot .sender")
            bot.wait_for(timeout=15_000)  # drawn by sandbox.js
            assert bot.inner_text() == "🤖 " + words["label_bot"]
            stamp = page.locator("#thread li.sender-bot time")
            at = sandbox_server._parse_at(stamp.get_attribute("datetime"))
            assert stamp.get_attribute("title") == sandbox_server.full_text(
                at, BANGKOK, words["time"]
            )
            assert page.evaluate(
                "(at) => fullText(at, 'Asia/Bangkok')", "2025-12-02T04:21:00.000Z"
            ) == sandbox_server.full_text(
                sandbox_server._parse_at("2025-12-02T04:21:00.000Z"), BANGKOK, words["time"]
            )
            _check_words(page, language)

            # The switch: this page in the other language, then every page after it.
            _needs_thai()
            page.click(f"nav.languages a[hreflang={other}]")
            page.wait_for_url(f"**lang={other}**")
            switched = i18n.texts(other)
            assert page.locator("html").get_attribute("lang") == other
            page.locator("#thread li.sender-bot .sender").wait_for(timeout=15_000)
            assert page.locator("#thread li.sender-bot .sender").inner_text() == (
                "🤖 " + switched["label_bot"]
            )
            _check_words(page, other)
            page.click("header a[href='/']")
            page.wait_for_url(sb.url + "/")
            assert page.locator("h1").inner_text() == switched["sandbox"]
            page.reload()
            assert page.locator("html").get_attribute("lang") == other
            page.locator("#info dt").first.wait_for(timeout=15_000)
            _check_words(page, other)
        finally:
            context.close()


def _check_words(page, language):
    """No English on a Thai page but names and ids; no Thai on an English one but the
    example in the message box's hint (content and ids are left out: ``UI_TEXT``)."""
    shown = page.evaluate(UI_TEXT)
    if language == "th":
        assert _latin_words(shown) - THAI_PAGE_LATIN == set(), shown
    else:
        leftover = shown.replace("(ภาษาไทยได้)", "")
        assert re.findall(r"[\u0e00-\u0e7f]+", leftover) == [], shown
