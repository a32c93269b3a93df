"""The API docs page in Chromium, in English and in Thai: a stranger is sent to sign in
and comes back to Swagger UI, which shows the tags, the webhook and the token header."""

import pytest
from django.utils import translation
from django.utils.translation import gettext

from rchat.api import docs
from tests.test_browser import PASSWORD, WAIT_MS, make_agent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize("language", ["en", "th"])
def test_a_stranger_signs_in_and_reads_the_docs_by_tag(browser, live_server, language):
    """Logged out: the login page (in the reader's language), then the docs page with
    every tag and its description, the webhook's operation and `Token <key>` intact."""
    agent = make_agent()
    context = browser.new_context(locale=language, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    with translation.override(language):
        sign_in = gettext("Sign in")
        descriptions = {tag["name"]: str(tag["description"]) for tag in docs.TAGS}
        webhook_summary = gettext("Receive an end user's message")

    page.goto(f"{live_server.url}/rchat/api/docs/")
    page.wait_for_url("**/rchat/login/?next=/rchat/api/docs/")
    assert page.locator("button[type=submit]").inner_text().strip() == sign_in
    page.fill("input[name=username]", agent.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/rchat/api/docs/")

    page.wait_for_selector(".swagger-ui .info .description", timeout=WAIT_MS)
    assert "Authorization: Token <key>" in page.inner_text(".swagger-ui .info .description")
    shown = page.locator("h3.opblock-tag").evaluate_all(
        "tags => tags.map(tag => tag.getAttribute('data-tag'))"
    )
    assert shown == [tag["name"] for tag in docs.TAGS]
    for name, description in descriptions.items():
        heading = page.locator(f'h3.opblock-tag[data-tag="{name}"]')
        assert description in " ".join(heading.inner_text().split())

    webhook = page.locator("#operations-Webhook-webhook_receive")
    assert webhook.locator(".opblock-summary-description").inner_text() == webhook_summary
    webhook.locator(".opblock-summary").click()
    webhook.locator(".parameters").get_by_text("X-Chatday-Signature-Token").wait_for()
    codes = webhook.locator(".responses-table tr.response .response-col_status").all_inner_texts()
    assert [code.strip() for code in codes] == [
        "200",
        "400",
        "401",
        "403",
        "405",
        "411",
        "413",
        "503",
    ]
    assert page.locator("#operations-Webhook-webhook_receive_for_credential").is_visible()
    assert script_errors == []
    context.close()
