"""Registering a Chatday-Token: the service, ``manage.py rchat_register`` and the admin action."""

import logging
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from werkzeug import Response

from rchat import crypto, services
from rchat.exceptions import RChatAuthError, RChatUnavailableError
from rchat.management.commands.rchat_register import Command as RegisterCommand
from rchat.models import Credential
from tests.factories import CredentialFactory, UserFactory

TOKEN = "cdt_live_1a2b3c4d5e6f7g8h9i0j"
NEW_TOKEN = "cdt_live_zz99yy88xx77ww66vv55"
SIGNATURE = "sig_live_aa11bb22cc33dd44ee55"
OLD_SIGNATURE = "sig_live_0ld0ld0ld0ld0ld0ld0ld"
REGISTER = "/api/v1/external/register"


@pytest.fixture
def base_url(httpserver):
    return httpserver.url_for("/").rstrip("/")


@pytest.fixture
def register_url(httpserver):
    return httpserver.url_for(REGISTER)


def r_chat_answers(server, response):
    server.expect_oneshot_request(REGISTER, method="POST").respond_with_response(response)


def accepts(server, token=TOKEN, signature=SIGNATURE):
    """R-Chat accepts ``token`` and issues ``signature``."""
    server.expect_oneshot_request(
        REGISTER, method="POST", headers={"Authorization": f"Bearer {token}"}
    ).respond_with_json({"Chatday-Signature-Token": signature})


def register(*args):
    out = StringIO()
    call_command("rchat_register", *args, stdout=out)
    return out.getvalue().splitlines()


def register_fails(*args):
    with pytest.raises(CommandError) as caught:
        register(*args)
    return str(caught.value)


# --- Success -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_command_creates_the_credential_and_prints_the_webhook_url(httpserver, base_url):
    accepts(httpserver)

    lines = register("--name", "shop", "--token", TOKEN, "--base-url", base_url)

    credential = Credential.objects.get(name="shop")
    assert lines == [
        "Registered 'shop' (token ••••9i0j, signature token ••••ee55).",
        "Paste this webhook URL into R-Chat:",
        "https://site.example/rchat/webhook/",
    ]
    assert credential.status == Credential.Status.ACTIVE
    assert credential.token == TOKEN
    assert credential.signature_token == SIGNATURE
    assert credential.signature_digest == crypto.digest(SIGNATURE)
    assert credential.base_url == base_url
    assert credential.registered_at is not None
    assert credential.last_error == ""
    httpserver.check_assertions()


@pytest.mark.django_db
def test_register_uses_rchat_api_base_url_when_no_base_url_is_given(httpserver, base_url, settings):
    settings.RCHAT = {**settings.RCHAT, "API_BASE_URL": base_url}
    accepts(httpserver)

    register("--name", "shop", "--token", TOKEN)

    credential = Credential.objects.get(name="shop")
    assert credential.base_url == ""
    assert credential.status == Credential.Status.ACTIVE


@pytest.mark.django_db
def test_registering_again_after_an_error_clears_it(httpserver, base_url):
    credential = CredentialFactory(
        name="shop",
        token=TOKEN,
        base_url=base_url,
        last_error="R-Chat is unavailable",
        last_error_at=timezone.now(),
    )
    accepts(httpserver)

    register("--name", "shop", "--token", TOKEN)

    credential.refresh_from_db()
    assert (credential.last_error, credential.last_error_at) == ("", None)


@pytest.mark.django_db
def test_a_new_token_for_an_existing_credential_is_saved_once_r_chat_accepts_it(
    httpserver, base_url
):
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    accepts(httpserver, token=NEW_TOKEN)

    register("--name", "shop", "--token", NEW_TOKEN)

    credential = Credential.objects.get(name="shop")
    assert credential.token == NEW_TOKEN
    assert credential.signature_token == SIGNATURE
    assert credential.previous_signature_token == ""
    httpserver.check_assertions()


@pytest.mark.django_db
def test_rotate_keeps_the_previous_signature_token_for_the_grace_period(
    httpserver, base_url, settings
):
    settings.RCHAT = {**settings.RCHAT, "SIGNATURE_GRACE_SECONDS": 3600}
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    accepts(httpserver)
    before = timezone.now()

    lines = register("--name", "shop", "--token", TOKEN, "--rotate")

    credential = Credential.objects.get(name="shop")
    assert credential.signature_token == SIGNATURE
    assert credential.signature_digest == crypto.digest(SIGNATURE)
    assert credential.previous_signature_token == OLD_SIGNATURE
    assert credential.previous_signature_digest == crypto.digest(OLD_SIGNATURE)
    grace = timedelta(seconds=3600)
    assert before + grace <= credential.previous_valid_until <= timezone.now() + grace
    until = credential.previous_valid_until.isoformat(timespec="seconds")
    assert lines[1] == f"The previous signature token is accepted until {until}."


@pytest.mark.django_db
def test_without_rotate_the_previous_signature_token_is_not_kept(httpserver, base_url):
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    accepts(httpserver)

    lines = register("--name", "shop", "--token", TOKEN)

    credential = Credential.objects.get(name="shop")
    assert credential.previous_signature_token == ""
    assert credential.previous_valid_until is None
    assert len(lines) == 3


# --- Failures: one line, token masked, status and last error, nothing half-saved ----------


@pytest.mark.django_db
def test_a_wrong_token_gives_one_line_and_marks_the_new_credential_invalid(
    httpserver, base_url, register_url, caplog
):
    r_chat_answers(httpserver, Response(f'{{"error": "unknown token {TOKEN}"}}', status=401))
    caplog.set_level(logging.DEBUG)

    message = register_fails("--name", "shop", "--token", TOKEN, "--base-url", base_url)

    assert message == (
        f"Register failed for 'shop': R-Chat refused the Chatday-Token ••••9i0j "
        f'(HTTP 401 from {register_url}): \'{{"error": "unknown token ••••9i0j"}}\''
    )
    credential = Credential.objects.get(name="shop")
    assert credential.status == Credential.Status.INVALID
    assert credential.signature_token == ""
    assert credential.last_error.startswith("R-Chat refused the Chatday-Token ••••9i0j")
    assert credential.last_error_at is not None
    assert TOKEN not in credential.last_error
    assert TOKEN not in caplog.text
    assert "••••9i0j" in caplog.text


@pytest.mark.django_db
def test_r_chat_refusing_the_stored_token_marks_an_active_credential_invalid(httpserver, base_url):
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    r_chat_answers(httpserver, Response("forbidden", status=403))

    message = register_fails("--name", "shop", "--token", TOKEN)

    assert "(HTTP 403 from" in message
    credential = Credential.objects.get(name="shop")
    assert credential.status == Credential.Status.INVALID
    assert credential.signature_token == OLD_SIGNATURE
    assert credential.signature_digest == crypto.digest(OLD_SIGNATURE)


@pytest.mark.django_db
def test_a_refused_new_token_leaves_the_working_credential_as_it_was(
    httpserver, base_url, register_url
):
    """The stored token still works, so the credential stays active; only the error is kept."""
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    r_chat_answers(httpserver, Response('{"error": "unknown token"}', status=401))

    message = register_fails("--name", "shop", "--token", NEW_TOKEN)

    assert message == (
        f"Register failed for 'shop': R-Chat refused the Chatday-Token ••••vv55 "
        f'(HTTP 401 from {register_url}): \'{{"error": "unknown token"}}\''
    )
    credential = Credential.objects.get(name="shop")
    assert credential.token == TOKEN
    assert credential.signature_token == OLD_SIGNATURE
    assert credential.status == Credential.Status.ACTIVE
    assert credential.last_error.startswith("New Chatday-Token not saved: R-Chat refused")
    assert NEW_TOKEN not in credential.last_error


@pytest.mark.django_db
def test_a_server_error_keeps_the_signature_token_and_records_the_error(
    httpserver, base_url, register_url
):
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    r_chat_answers(httpserver, Response("Internal Server Error", status=500))

    message = register_fails("--name", "shop", "--token", TOKEN, "--rotate")

    assert message == (
        f"Register failed for 'shop': R-Chat is unavailable (HTTP 500 from {register_url}): "
        "'Internal Server Error'"
    )
    credential = Credential.objects.get(name="shop")
    assert credential.status == Credential.Status.ACTIVE
    assert credential.signature_token == OLD_SIGNATURE
    assert credential.signature_digest == crypto.digest(OLD_SIGNATURE)
    assert credential.previous_signature_token == ""
    assert credential.last_error == message.removeprefix("Register failed for 'shop': ")


@pytest.mark.django_db
def test_a_time_out_is_one_line_naming_it(httpserver, base_url, register_url, settings):
    settings.RCHAT = {**settings.RCHAT, "READ_TIMEOUT": 0.2}

    def slow(request):
        time.sleep(1.0)
        return Response('{"signature_token": "too-late-1234567"}')

    httpserver.expect_request(REGISTER).respond_with_handler(slow)

    message = register_fails("--name", "shop", "--token", TOKEN, "--base-url", base_url)

    assert message == (
        f"Register failed for 'shop': R-Chat did not answer {register_url} within 0.2s (time-out)"
    )
    credential = Credential.objects.get(name="shop")
    assert credential.status == Credential.Status.NEW
    assert credential.signature_token == ""
    assert "time-out" in credential.last_error


@pytest.mark.django_db
def test_an_unreadable_answer_shows_what_came_back(httpserver, base_url, register_url):
    CredentialFactory(name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE)
    r_chat_answers(httpserver, Response("<html>\n<body>Maintenance</body>\n</html>", status=200))

    message = register_fails("--name", "shop", "--token", TOKEN)

    assert message == (
        f"Register failed for 'shop': R-Chat answered Register with HTTP 200 from "
        f"{register_url} but no signature token: '<html> <body>Maintenance</body> </html>'"
    )
    credential = Credential.objects.get(name="shop")
    assert credential.signature_token == OLD_SIGNATURE
    assert credential.status == Credential.Status.ACTIVE


@pytest.mark.django_db
def test_no_base_url_anywhere_is_a_clear_error(settings):
    settings.RCHAT = {**settings.RCHAT, "API_BASE_URL": ""}

    message = register_fails("--name", "shop", "--token", TOKEN)

    assert message == (
        "Register failed for 'shop': No R-Chat base URL: set the credential's base URL or "
        'RCHAT["API_BASE_URL"].'
    )
    assert Credential.objects.get(name="shop").last_error.startswith("No R-Chat base URL")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", " ", "--token", TOKEN], "A credential needs a name."),
        (["--name", "shop", "--token", "  "], "A credential needs a Chatday-Token."),
        (
            ["--name", "shop", "--token", "cdt_one cdt_two"],
            "A Chatday-Token has no spaces in it: check what was pasted.",
        ),
        (
            ["--name", "shop", "--token", TOKEN, "--base-url", "r-chat.example"],
            "The base URL 'r-chat.example' is not an http(s) URL.",
        ),
        (["--name", "x" * 101, "--token", TOKEN], "A credential's name is at most 100 characters."),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored(args, message):
    assert register_fails(*args) == message
    assert not Credential.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_from_the_command_line_a_failure_exits_non_zero_with_one_line_on_stderr(
    httpserver, base_url, capsys
):
    r_chat_answers(httpserver, Response("no", status=401))

    with pytest.raises(SystemExit) as exited:
        RegisterCommand().run_from_argv(
            ["manage.py", "rchat_register", "--skip-checks", "--name", "shop",
             "--token", TOKEN, "--base-url", base_url]
        )  # fmt: skip

    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    # stderr also carries rchat's log (the project logs to the console): the reason
    # itself is the last line, whole.
    last = captured.err.splitlines()[-1]
    assert last.startswith("CommandError: Register failed for 'shop': R-Chat refused")
    assert last.endswith(f"(HTTP 401 from {base_url}{REGISTER}): 'no'")
    assert TOKEN not in captured.err


@pytest.mark.django_db(transaction=True)
def test_from_the_command_line_success_exits_zero(httpserver, base_url, capsys):
    accepts(httpserver)

    RegisterCommand().run_from_argv(
        [
            "manage.py",
            "rchat_register",
            "--skip-checks",
            "--name",
            "shop",
            "--token",
            TOKEN,
            "--base-url",
            base_url,
        ]
    )

    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines()[-1].startswith("https://site.example/rchat/webhook/")
    assert TOKEN not in captured.out
    assert SIGNATURE not in captured.out


# --- The service -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_service_raises_the_typed_error_after_recording_it(httpserver, base_url):
    credential = CredentialFactory(
        token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE, status="new"
    )
    r_chat_answers(httpserver, Response("busy", status=503))

    with pytest.raises(RChatUnavailableError):
        services.credential_register(credential=credential)

    assert credential.last_error.startswith("R-Chat is unavailable (HTTP 503")
    credential.refresh_from_db()
    assert credential.status == Credential.Status.NEW
    assert credential.last_error.startswith("R-Chat is unavailable (HTTP 503")


@pytest.mark.django_db
def test_service_rotation_with_the_same_signature_token_keeps_no_previous(httpserver, base_url):
    credential = CredentialFactory(token=TOKEN, base_url=base_url, signature_token=SIGNATURE)
    accepts(httpserver, signature=SIGNATURE)

    services.credential_register(credential=credential, rotate=True)

    credential.refresh_from_db()
    assert credential.previous_signature_token == ""
    assert credential.previous_valid_until is None


@pytest.mark.django_db
def test_credential_mark_invalid_flags_the_credential_with_a_masked_reason():
    credential = CredentialFactory(token=TOKEN)

    services.credential_mark_invalid(
        credential=credential, error=RChatAuthError(f"refused {crypto.mask(TOKEN)}")
    )

    credential.refresh_from_db()
    assert credential.status == Credential.Status.INVALID
    assert credential.last_error == "refused ••••9i0j"


# --- The admin action --------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_superuser=True))
    return client


def run_register_action(admin_client, *credentials):
    return admin_client.post(
        reverse("admin:rchat_credential_changelist"),
        {"action": "register", "_selected_action": [c.pk for c in credentials]},
        follow=True,
    )


def page_messages(response):
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db
def test_admin_action_registers_and_shows_the_webhook_url(admin_client, httpserver, base_url):
    credential = CredentialFactory(
        name="shop", token=TOKEN, base_url=base_url, signature_token="", status="new"
    )
    accepts(httpserver)

    response = run_register_action(admin_client, credential)

    assert response.status_code == 200
    credential.refresh_from_db()
    assert credential.status == Credential.Status.ACTIVE
    assert credential.signature_token == SIGNATURE
    assert page_messages(response) == [
        "shop: paste this webhook URL into R-Chat: https://site.example/rchat/webhook/",
        "1 credential registered.",
    ]
    assert TOKEN not in response.content.decode()
    assert SIGNATURE not in response.content.decode()


@pytest.mark.django_db
def test_admin_action_reports_a_refused_token_masked_and_flags_it(
    admin_client, httpserver, base_url, register_url
):
    credential = CredentialFactory(
        name="shop", token=TOKEN, base_url=base_url, signature_token=OLD_SIGNATURE
    )
    r_chat_answers(httpserver, Response(f"bad token {TOKEN}", status=401))

    response = run_register_action(admin_client, credential)

    assert page_messages(response) == [
        f"Register failed for shop: R-Chat refused the Chatday-Token ••••9i0j "
        f"(HTTP 401 from {register_url}): 'bad token ••••9i0j'"
    ]
    assert TOKEN not in response.content.decode()
    credential.refresh_from_db()
    assert credential.status == Credential.Status.INVALID
    assert credential.signature_token == OLD_SIGNATURE


@pytest.mark.django_db
def test_admin_credential_pages_never_show_a_token_whole(admin_client):
    credential = CredentialFactory(name="shop", token=TOKEN, signature_token=SIGNATURE)

    pages = [
        admin_client.get(reverse("admin:rchat_credential_changelist")),
        admin_client.get(reverse("admin:rchat_credential_change", args=[credential.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert TOKEN not in html
        assert SIGNATURE not in html
        assert "••••9i0j" in html


@pytest.mark.django_db
def test_register_command_reads_the_token_from_standard_input_with_a_dash(
    httpserver, base_url, monkeypatch
):
    """`--token -` keeps the token out of the process list and the shell history."""
    accepts(httpserver)
    monkeypatch.setattr("sys.stdin", StringIO(TOKEN + "\n"))

    lines = register("--name", "shop", "--token", "-", "--base-url", base_url)

    assert Credential.objects.get(name="shop").token == TOKEN
    assert lines[-1].startswith("https://site.example/rchat/webhook/")
