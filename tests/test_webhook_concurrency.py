"""Concurrent webhook calls on PostgreSQL: real threads, each with its own connection."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from rchat.models import ChatRoom, Message, WebhookEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def post_all(bodies, token):
    """POST every body at once from its own thread; the answers' status codes."""
    start = threading.Barrier(len(bodies))
    statuses = [None] * len(bodies)
    errors = []

    def call(index, body):
        try:
            start.wait()
            response = Client().post(
                "/rchat/webhook/",
                data=body,
                content_type="application/json",
                headers={"X-Chatday-Signature-Token": token},
            )
            statuses[index] = response.status_code
        except Exception as exc:  # reported below, with the thread's own traceback lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i, b)) for i, b in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return statuses


def test_fifty_first_messages_for_a_new_chat_give_one_room_and_fifty_messages(credential):
    bodies = [
        json.dumps({"chat_id": "new-chat", "message": {"type": "text", "data": f"m{n}"}})
        for n in range(50)
    ]
    statuses = post_all(bodies, credential.signature_token)

    assert statuses == [200] * 50
    room = ChatRoom.objects.get()
    assert room.chat_id == "new-chat"
    assert sorted(room.messages.values_list("text", flat=True)) == sorted(
        f"m{n}" for n in range(50)
    )
    assert room.unread_count == 50
    assert WebhookEvent.objects.filter(outcome="processed").count() == 50


def test_concurrent_redeliveries_with_one_message_id_store_one_message(credential):
    body = json.dumps({"chat_id": "c", "message": {"id": "m-1", "type": "text", "data": "hi"}})
    statuses = post_all([body] * 20, credential.signature_token)

    assert statuses == [200] * 20
    assert Message.objects.count() == 1
    assert ChatRoom.objects.get().unread_count == 1
    outcomes = sorted(WebhookEvent.objects.values_list("outcome", flat=True))
    assert outcomes == ["duplicate"] * 19 + ["processed"]


def test_concurrent_identical_bodies_without_id_store_one_message(credential):
    body = json.dumps({"chat_id": "c", "message": {"type": "text", "data": "hi"}})
    statuses = post_all([body] * 20, credential.signature_token)

    assert statuses == [200] * 20
    assert Message.objects.count() == 1
    assert WebhookEvent.objects.filter(outcome="duplicate").count() == 19
