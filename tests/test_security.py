"""How the project protects its pages: a strict Content-Security-Policy and sign-in lockouts.

The policy is project/settings.py's SECURE_CSP (Django 6's own middleware, or
project/csp.py on 5.2); lockouts are django-axes on both sign-in forms, rchat's and
admin's. tests/test_browser.py checks in a real browser that no page breaks the policy.
"""

import pytest
from django.urls import reverse

from project.csp import build_policy
from tests.factories import UserFactory, user_with

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests"
LOGINS = {
    "rchat": lambda: reverse("rchat:login"),
    "admin": lambda: reverse("admin:login"),
}


def policy(response):
    """The response's Content-Security-Policy as {directive: [sources]}."""
    header = response.headers["Content-Security-Policy"]
    return {
        directive: sources
        for directive, *sources in (part.split() for part in header.split(";") if part.strip())
    }


@pytest.mark.parametrize(
    "url",
    ["rchat:login", "rchat:inbox", "admin:index", "admin:rchat_chatroom_changelist"],
)
def test_pages_forbid_inline_script_and_style(client, url):
    if url != "rchat:login":  # which sends a signed-in user on to the inbox
        client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.get(reverse(url))
    assert response.status_code == 200
    found = policy(response)
    assert found["script-src"] == ["'self'"]
    assert found["style-src"] == ["'self'"]
    assert found["object-src"] == ["'none'"]
    assert found["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


def test_the_policy_is_written_like_djangos_own():
    assert (
        build_policy(
            {
                "default-src": ["'self'"],
                "img-src": ["'self'", "https:"],
                "upgrade-insecure-requests": True,
                "report-uri": None,
            }
        )
        == "default-src 'self'; img-src 'self' https:; upgrade-insecure-requests"
    )


def test_the_api_docs_script_is_a_file_and_needs_a_signed_in_reader(client):
    docs = reverse("rchat:api:docs")
    assert client.get(docs + "?script=").status_code in (302, 403)

    client.force_login(user_with("view_chatroom"))
    page = client.get(docs)
    assert page.status_code == 200
    assert b"<script>" not in page.content  # the start-up script is ?script=, a file
    script = client.get(docs + "?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


def _fail(client, url, username, times):
    for _ in range(times):
        response = client.post(url, {"username": username, "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    return response


@pytest.mark.parametrize("form", LOGINS)
def test_the_fifth_failed_sign_in_locks_the_username_out(client, form):
    url = LOGINS[form]()
    UserFactory(username="malee", is_staff=True)
    _fail(client, url, "malee", 4)
    fifth = client.post(url, {"username": "malee", "password": "wrong"})
    assert fifth.status_code == 429

    # Even the right password is refused now, with rchat's page saying why.
    locked = client.post(url, {"username": "malee", "password": PASSWORD})
    assert locked.status_code == 429
    assert "rchat/locked_out.html" in [t.name for t in locked.templates]
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session

    # Another username from the same address is not locked.
    UserFactory(username="somchai", is_staff=True)
    other = client.post(url, {"username": "somchai", "password": PASSWORD})
    assert other.status_code == 302


def test_a_successful_sign_in_clears_the_failures(client):
    url = LOGINS["rchat"]()
    UserFactory(username="malee")
    _fail(client, url, "malee", 4)
    assert client.post(url, {"username": "malee", "password": PASSWORD}).status_code == 302
    client.logout()

    _fail(client, url, "malee", 4)  # four more: not five in a row
    assert client.post(url, {"username": "malee", "password": PASSWORD}).status_code == 302


def test_the_lockout_page_is_translated(client, settings):
    settings.LANGUAGE_CODE = "th"
    url = LOGINS["rchat"]()
    UserFactory(username="malee")
    _fail(client, url, "malee", 4)
    locked = client.post(url, {"username": "malee", "password": "wrong"})
    assert locked.status_code == 429
    assert "ถูกระงับการเข้าสู่ระบบ" in locked.content.decode()
