"""Random bodies and headers: never a 5xx, and every authenticated call leaves its event."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rchat.models import WebhookEvent
from tests.strategies import webhook_bodies

pytestmark = pytest.mark.django_db

LIMIT = 4096

bodies = st.one_of(
    webhook_bodies(),
    # Around the size limit, both sides of it.
    st.binary(min_size=LIMIT - 10, max_size=LIMIT + 10),
)
header_names = st.from_regex(r"X-[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF, exclude_categories=["Cs"]),
    max_size=40,
)


@pytest.fixture(autouse=True)
def _small_body_limit(settings):
    settings.RCHAT = {**settings.RCHAT, "WEBHOOK_MAX_BYTES": LIMIT}


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    extra_headers=st.dictionaries(header_names, header_values, max_size=4),
    token_kind=st.sampled_from(["valid", "wrong", "none"]),
    content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
)
def test_no_input_gives_a_5xx_and_no_authenticated_body_is_lost(
    credential, body, extra_headers, token_kind, content_type
):
    headers = dict(extra_headers)
    headers.pop("X-Chatday-Signature-Token", None)
    if token_kind == "valid":
        headers["X-Chatday-Signature-Token"] = credential.signature_token
    elif token_kind == "wrong":
        headers["X-Chatday-Signature-Token"] = "sig_" + credential.signature_token[::-1]
    before = WebhookEvent.objects.count()

    response = Client().post(
        "/rchat/webhook/", data=body, content_type=content_type, headers=headers
    )

    assert response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"
    events = WebhookEvent.objects.order_by("-id")
    if token_kind != "valid":
        assert response.status_code in (401, 403)
        assert events.count() == before
        return
    assert events.count() == before + 1
    event = events.first()
    assert credential.signature_token not in json.dumps(event.headers)
    if response.status_code == 413:
        assert len(body) > LIMIT
    else:
        assert bytes(event.body) == body
        assert (response.status_code == 200) == (event.outcome != "failed")
