"""Re-processing failed webhook events: services.webhook_event_reprocess and rchat_reprocess."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from rchat import services
from rchat.models import Message, WebhookEvent

pytestmark = pytest.mark.django_db


def post(body, credential):
    return Client().post(
        "/rchat/webhook/",
        data=body.encode() if isinstance(body, str) else body,
        content_type="application/json",
        headers={"X-Chatday-Signature-Token": credential.signature_token},
    )


def body_of(data, **extra):
    return json.dumps({"chat_id": "c-1", "message": {"type": "text", "data": data}, **extra})


@pytest.fixture
def failed_by_a_bug(credential, monkeypatch):
    """Post ``body`` while storing is broken; the fix is undone after the call."""

    def post_during_outage(body):
        with monkeypatch.context() as patch:
            patch.setattr(services.inbound, "_inbound_store", _broken)
            assert post(body, credential).status_code == 503
        return WebhookEvent.objects.order_by("-id").first()

    return post_during_outage


def _broken(*args, **kwargs):
    raise RuntimeError("simulated bug")


def test_a_failed_event_is_stored_when_re_processed_at_the_time_it_came(failed_by_a_bug):
    event = failed_by_a_bug(body_of("kept while broken"))
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(hours=2))
    event.refresh_from_db()

    result = services.webhook_event_reprocess(event=event)

    assert result.outcome == WebhookEvent.Outcome.PROCESSED
    message = Message.objects.get()
    assert message.text == "kept while broken"
    assert message.created_at == event.received_at
    event.refresh_from_db()
    assert (event.outcome, event.message, event.error) == ("processed", message, "")


def test_a_call_r_chat_sent_again_meanwhile_makes_the_re_processed_one_a_duplicate(
    credential, failed_by_a_bug
):
    body = body_of("once")
    event = failed_by_a_bug(body)
    assert post(body, credential).status_code == 200  # R-Chat retried after the 503

    result = services.webhook_event_reprocess(event=event)

    assert result.outcome == WebhookEvent.Outcome.DUPLICATE
    assert Message.objects.count() == 1


def test_only_failed_events_are_re_processed(credential):
    post(body_of("fine"), credential)
    with pytest.raises(ValueError, match="only failed events"):
        services.webhook_event_reprocess(event=WebhookEvent.objects.get())


def test_the_command_re_processes_every_failed_event_with_progress_and_a_summary(
    credential, failed_by_a_bug, capsys
):
    failed_by_a_bug(body_of("one"))
    failed_by_a_bug(body_of("two"))
    post(b"not json", credential)  # failed for good: the body itself is wrong

    call_command("rchat_reprocess", "--failed")

    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "Re-processing 3 webhook event(s)…"
    assert out[1].startswith("[1/3] event #") and "processed (message #" in out[1]
    assert "failed (The body is not valid JSON" in out[3]
    assert out[-1] == "Re-processed 3 webhook event(s): 1 failed, 2 processed."
    assert sorted(Message.objects.values_list("text", flat=True)) == ["one", "two"]


def test_the_command_re_processes_one_event_by_id(failed_by_a_bug, capsys):
    event = failed_by_a_bug(body_of("by id"))
    call_command("rchat_reprocess", "--id", str(event.pk))
    assert "1 processed" in capsys.readouterr().out
    assert Message.objects.get().text == "by id"


def test_the_command_refuses_an_unknown_id(credential):
    with pytest.raises(CommandError, match="No webhook event with id 999999"):
        call_command("rchat_reprocess", "--id", "999999")


def test_the_command_refuses_an_event_that_did_not_fail(credential):
    post(body_of("fine"), credential)
    event = WebhookEvent.objects.get()
    with pytest.raises(CommandError, match="did not fail"):
        call_command("rchat_reprocess", "--id", str(event.pk))


def test_an_event_refused_for_its_size_is_skipped(credential, settings, capsys):
    settings.RCHAT = {**settings.RCHAT, "WEBHOOK_MAX_BYTES": 10}
    assert post(body_of("too long for the limit"), credential).status_code == 413

    call_command("rchat_reprocess")

    out = capsys.readouterr().out
    assert "kept no body" in out
    assert out.strip().endswith("1 skipped.")
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.FAILED


def test_an_event_that_can_never_be_stored_stays_failed_with_its_reason(credential, capsys):
    """A number too large for a float: before, the command failed on the database error."""
    body = '{"chat_id": "c-1", "message": {"type": "text", "data": "hi", "n": 1e400}}'
    assert post(body, credential).status_code == 400

    call_command("rchat_reprocess", "--failed")

    out = capsys.readouterr().out
    assert "event #" in out and "failed (The body is not valid JSON: the number 1e400" in out
    assert out.strip().endswith("1 failed.")
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookEvent.Outcome.FAILED and not Message.objects.exists()
