"""The API's schema and docs page: generated without a warning, tagged by purpose, the
webhook described as it answers, and a docs page that sends a stranger to sign in."""

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import jsonschema
import pytest
from django.core.management import call_command
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils import translation
from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.test import APIClient

from rchat import webhooks
from rchat.api import docs
from tests.factories import CredentialFactory, UserFactory, user_with
from tests.processes import ROOT
from tests.test_api import _as_json_schema, token_client

pytestmark = pytest.mark.django_db

TAG_NAMES = [tag["name"] for tag in docs.TAGS]
DOCS_URL = reverse("rchat:api:docs")
SCHEMA_URL = reverse("rchat:api:schema")


def generate(tmp_path, *options):
    """The schema as ``manage.py spectacular`` writes it with rchat's settings; any
    warning or error (W001 colliding operation ids, W002 a view without a serializer,
    anything new) and any OpenAPI violation fails."""
    GENERATOR_STATS.reset()  # warnings other tests' schemas left behind are theirs
    out = tmp_path / "schema.json"
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--format=openapi-json",
        "--custom-settings=rchat.api.docs.SCHEMA_SETTINGS",
        f"--file={out}",
        *options,
    )
    return json.loads(out.read_text())


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


@pytest.fixture
def schema():
    """The schema as the schema endpoint serves it to a bot."""
    response = token_client(user_with()).get(
        SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    "options",
    [(), ("--urlconf=rchat.urls",), ("--lang=th",)],
    ids=["site", "rchat-urls", "thai"],
)
def test_the_schema_generates_with_no_warning_and_validates(tmp_path, options):
    """Mounted in the site or alone, in English or Thai: no warning, valid OpenAPI 3."""
    document = generate(tmp_path, *options)
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert {"webhook_receive", "webhook_receive_for_credential", "rooms_list"} <= set(ids)


def test_operation_ids_do_not_depend_on_where_the_site_mounts_rchat(tmp_path):
    """The webhook beside the API does not put "api_" before every id, mounted anywhere."""
    site = generate(tmp_path)
    alone = generate(tmp_path, "--urlconf=rchat.urls")

    def ids(document):
        return sorted(operation["operationId"] for _, _, operation in operations(document))

    assert ids(site) == ids(alone)
    assert not [id for id in ids(site) if id.startswith("api_")]
    assert "rooms_messages_create" in ids(site)


def test_a_sites_own_schema_run_describes_the_webhook_without_a_warning(tmp_path):
    """A site that documents its own DRF views with drf-spectacular runs the command
    without rchat's settings: the webhook is no longer W001 (two operations named
    webhook_create) nor W002 (no serializer). A process of its own: the schema class
    is read when the views are imported."""
    (tmp_path / "documented_site.py").write_text(
        "from project.settings import *\n"
        "REST_FRAMEWORK = {**REST_FRAMEWORK, "
        '"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}\n'
    )
    out = tmp_path / "site.json"
    run = subprocess.run(  # noqa: S603 - a fixed command line
        [sys.executable, "manage.py", "spectacular", "--format=openapi-json", f"--file={out}"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "documented_site",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stderr.splitlines() if "ebhook" in line] == []
    document = json.loads(out.read_text())
    webhook = document["paths"]["/rchat/webhook/"]["post"]
    assert (webhook["operationId"], webhook["tags"]) == ("webhook_receive", [docs.WEBHOOK])
    assert "requestBody" in webhook
    rooms = document["paths"]["/rchat/api/rooms/"]["get"]
    assert (rooms["operationId"], rooms["tags"]) == ("rooms_list", [docs.ROOMS])


def test_every_operation_has_exactly_one_of_the_fixed_tags(schema):
    """Rooms, Messages, … Webhook, each described: no "default", no tag of one endpoint."""
    assert [tag["name"] for tag in schema["tags"]] == TAG_NAMES
    assert all(tag["description"] for tag in schema["tags"])
    tagged = {}
    for path, method, operation in operations(schema):
        assert len(operation["tags"]) == 1, (method, path, operation["tags"])
        tagged.setdefault(operation["tags"][0], []).append(f"{method} {path}")
    assert set(tagged) == set(TAG_NAMES)
    assert sorted(tagged[docs.WEBHOOK]) == ["post /rchat/webhook/", "post /rchat/webhook/{key}/"]
    assert "post /rchat/api/rooms/{id}/notes/" in tagged[docs.NOTES]
    assert "get /rchat/api/canned/" in tagged[docs.LABELS]
    assert "get /rchat/api/messages/search/" in tagged[docs.MESSAGES]


def test_the_schema_holds_the_api_and_the_webhook_and_nothing_else_of_the_site(schema):
    """Admin, the inbox, the login page and the docs page are no operations."""
    prefixes = ("/rchat/api/", "/rchat/webhook/")
    assert [path for path in schema["paths"] if not path.startswith(prefixes)] == []
    assert not [path for path in schema["paths"] if "/docs/" in path or "/schema/" in path]


def test_the_token_header_is_a_code_span_not_an_html_tag(schema):
    """Markdown would take a bare <key> for HTML and drop it ("Token '.")."""
    assert "`Authorization: Token <key>`" in schema["info"]["description"]
    assert "<key>" not in schema["info"]["description"].replace("`Authorization: Token <key>`", "")


def test_the_schema_is_in_the_readers_language(client):
    """With Thai active, the descriptions rchat translates come in Thai."""
    client.force_login(user_with("view_chatroom"))
    document = client.get(
        SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json", HTTP_ACCEPT_LANGUAGE="th"
    ).json()
    with translation.override("th"):
        expected = [str(tag["description"]) for tag in docs.TAGS]
        description = str(docs.SCHEMA_SETTINGS["DESCRIPTION"])
    assert [tag["description"] for tag in document["tags"]] == expected
    assert document["info"]["description"] == description
    # Tag names are identifiers (links, generated client classes): the same in Thai.
    assert [tag["name"] for tag in document["tags"]] == TAG_NAMES


# --- The webhook, as documented and as it answers --------------------------------------


def _webhook_operation(schema, path="/rchat/webhook/"):
    return schema["paths"][path]["post"]


def test_the_webhook_documents_its_header_body_and_every_answer(schema):
    operation = _webhook_operation(schema)
    header = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert header["X-Chatday-Signature-Token"]["required"] is True
    assert "application/json" in operation["requestBody"]["content"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "405", "411", "413", "503"}
    assert all(answer["description"] for answer in operation["responses"].values())
    keyed = _webhook_operation(schema, "/rchat/webhook/{key}/")
    assert [p["name"] for p in keyed["parameters"] if p["in"] == "path"] == ["key"]
    assert not [p for p in operation["parameters"] if p["in"] == "path"]


@pytest.fixture
def refusals_forgotten():
    """The refusals this test makes are not the ones another test's log looks for: the
    webhook logs one refusal per interval and process."""
    yield
    webhooks.refusal_log._last = None


@pytest.fixture
def webhook_check(schema):
    """``check(response)``: its status is documented and its body is what the schema
    says for that status."""
    components = _as_json_schema(schema["components"])
    operation = _webhook_operation(schema)

    def check(response):
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{response.status_code} is not documented"
        body = _as_json_schema(documented["content"]["application/json"]["schema"])
        validator = jsonschema.Draft202012Validator({**body, "components": components})
        assert list(validator.iter_errors(response.json())) == [], response.json()

    return check


def test_a_body_as_documented_is_stored_and_answered_as_documented(
    schema, webhook_check, settings, refusals_forgotten
):
    """The documented body validates, is stored, and every refusal is documented too."""
    credential = CredentialFactory()
    body = {"chat_id": "line-8841", "message": {"type": "text", "data": "สวัสดีค่ะ"}}
    components = _as_json_schema(schema["components"])
    request_schema = _webhook_operation(schema)["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator(
        {**_as_json_schema(request_schema["schema"]), "components": components}
    )
    assert list(validator.iter_errors(body)) == []
    assert list(validator.iter_errors({"chat_id": ["no"], "message": {"data": 1}})) != []

    client = APIClient()
    url = reverse("rchat:webhook")
    token = {"HTTP_X_CHATDAY_SIGNATURE_TOKEN": credential.signature_token}
    answers = [
        client.post(url, body, format="json", **token),
        client.post(url, b"", content_type="application/json", **token),  # a verify call
        client.post(url, body, format="json"),
        client.post(url, body, format="json", HTTP_X_CHATDAY_SIGNATURE_TOKEN="wrong"),
        client.post(url, b"[1, 2", content_type="application/json", **token),
        client.get(url, **token),
    ]
    settings.RCHAT = {**settings.RCHAT, "WEBHOOK_MAX_BYTES": 10}
    answers.append(client.post(url, body, format="json", **token))
    assert [answer.status_code for answer in answers] == [200, 200, 401, 403, 400, 405, 413]
    for answer in answers:
        webhook_check(answer)
    codes = {answer.json().get("code") for answer in answers} - {None}
    assert codes <= set(docs.WEBHOOK_ERROR_CODES)
    assert credential.rooms.get().messages.get().text == "สวัสดีค่ะ"


# --- Who may read them --------------------------------------------------------------------


def test_a_stranger_is_sent_from_the_docs_page_to_the_login_page(client):
    """Not signed in: a redirect to LOGIN_URL that comes back here, not a bare 403."""
    response = client.get(DOCS_URL)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == resolve_url("rchat:login")
    assert location.query == "next=/rchat/api/docs/"
    # The script the page loads is behind the same door.
    assert client.get(DOCS_URL + "?script=").status_code == 302


def test_the_docs_page_follows_the_sites_login_url(client, settings):
    settings.LOGIN_URL = "/accounts/login/"
    response = client.get(DOCS_URL)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/rchat/api/docs/"


def test_signing_in_leads_back_to_the_docs_page(client):
    """The login page the stranger lands on returns them to the docs once signed in."""
    user_with("view_chatroom", username="kanya", is_staff=False)
    login = client.get(DOCS_URL, follow=True)
    assert login.request["PATH_INFO"] == resolve_url("rchat:login")
    signed_in = client.post(
        login.request["PATH_INFO"] + "?" + login.request["QUERY_STRING"],
        {"username": "kanya", "password": "pw-for-tests"},
        follow=True,
    )
    assert signed_in.redirect_chain[-1][0] == DOCS_URL
    assert signed_in.status_code == 200


def test_signed_in_without_the_permission_the_docs_page_is_the_sites_403(client):
    client.force_login(UserFactory(is_staff=False))
    response = client.get(DOCS_URL)
    assert response.status_code == 403


def test_the_schema_refuses_a_stranger_in_json(client):
    """A program asking for the schema without credentials: 401 and a JSON reason."""
    response = APIClient().get(SCHEMA_URL)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    forbidden = token_client(UserFactory(is_staff=False)).get(SCHEMA_URL)
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "You do not have permission to see chat rooms."}
