"""Reading webhook bodies: payloads.inbound_load / inbound_parse / inbound_text."""

import json
from datetime import UTC, datetime

import pytest

from rchat.payloads import (
    INBOUND_DEPTH_MAX,
    InvalidPayload,
    inbound_load,
    inbound_parse,
    inbound_text,
)


def parse(body):
    if not isinstance(body, bytes):
        body = json.dumps(body, ensure_ascii=False).encode()
    return inbound_parse(inbound_load(body))


def test_chat_id_is_read_at_the_top_or_inside_the_message():
    assert parse({"message": {"type": "text", "data": "a"}, "chat_id": "top"}).chat_id == "top"
    assert parse({"message": {"type": "text", "data": "a", "chat_id": "in"}}).chat_id == "in"
    assert parse({"message": {"type": "text", "data": "a"}, "chat_id": 12345}).chat_id == "12345"


@pytest.mark.parametrize(
    "body", [b"", b"  \n", b"{}", b'{"event": "verify"}', b'{"message": null}']
)
def test_a_body_without_a_message_is_a_verify_ping(body):
    assert parse(body) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"message": {"type": "text", "data": "a"}}, "no chat_id"),
        ({"message": {"type": "text", "data": "a"}, "chat_id": ""}, "no chat_id"),
        ({"message": {"type": "text", "data": "a"}, "chat_id": {"x": 1}}, "no chat_id"),
        ({"chat_id": "c"}, "no message"),
        ({"chat_id": "c", "message": {}}, "neither a type nor data"),
        ({"chat_id": "c", "message": [1]}, "must be a JSON object"),
        ({"chat_id": "c" * 256, "message": "hi"}, "longer than 255"),
        ({"chat_id": "c", "message": {"type": "t" * 51, "data": 1}}, "longer than 50"),
        (b'"just a string"', "not a string"),
        (b"[]", "not an array"),
        (b"{bad json", "not valid JSON"),
        (b'{"chat_id": "c", "message": {"type": "text", "data": Infinity}}', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        # json.loads reads this on Python 3.12 and 3.13; inbound_clean could not walk it.
        (
            b'{"chat_id": "c", "message": {"data": ' + b"[" * 1500 + b"]" * 1500 + b"}}",
            "not valid JSON",
        ),
        ("สวัสดี".encode("tis-620"), "not UTF-8"),
    ],
)
def test_what_cannot_be_a_message_is_refused_with_a_clear_reason(body, reason):
    with pytest.raises(InvalidPayload) as error:
        parse(body)
    assert reason in str(error.value)


def nested(depth):
    """A message whose data is ``depth`` arrays one inside the other."""
    return b'{"chat_id": "c", "message": {"data": ' + b"[" * depth + b"]" * depth + b"}}"


def test_arrays_and_objects_may_nest_as_deep_as_the_limit_and_no_deeper():
    # The body and its message are two of the levels; data's arrays are the rest.
    data = parse(nested(INBOUND_DEPTH_MAX - 2)).data
    for _ in range(INBOUND_DEPTH_MAX - 3):
        (data,) = data
    assert data == []

    with pytest.raises(InvalidPayload, match=f"nested more than {INBOUND_DEPTH_MAX} levels"):
        parse(nested(INBOUND_DEPTH_MAX - 1))


def test_data_may_be_a_string_or_an_object_and_is_kept_as_it_came():
    assert parse({"chat_id": "c", "message": {"type": "text", "data": "hi"}}).data == "hi"
    data = {"url": "https://x.example/a.png", "width": 10}
    assert parse({"chat_id": "c", "message": {"type": "image", "data": data}}).data == data


def test_a_bare_string_message_is_text():
    message = parse({"chat_id": "c", "message": "สวัสดี 😀"})
    assert (message.type, message.data, message.text) == ("text", "สวัสดี 😀", "สวัสดี 😀")


def test_extra_fields_are_kept_and_the_known_ones_read():
    message = parse(
        {
            "chat_id": "c",
            "message": {"type": "text", "data": "hi", "message_id": "abc", "channel": "facebook"},
            "sender": {"displayName": "Somchai", "avatar": "https://cdn.example/s.jpg"},
            "timestamp": "2024-01-02T03:04:05+07:00",
            "anything": [1, 2],
        }
    )
    assert message.external_id == "abc"
    assert message.channel == "facebook"
    assert message.display_name == "Somchai"
    assert message.avatar_url == "https://cdn.example/s.jpg"
    assert message.sent_at == datetime(2024, 1, 1, 20, 4, 5, tzinfo=UTC)
    assert message.extra == {
        "sender": {"displayName": "Somchai", "avatar": "https://cdn.example/s.jpg"},
        "timestamp": "2024-01-02T03:04:05+07:00",
        "anything": [1, 2],
        "message": {"message_id": "abc", "channel": "facebook"},
    }


@pytest.mark.parametrize(
    ("value", "channel"),
    [("web", "web"), ("Web-Chat", "web"), ("LINE", "line"), ("messenger", "facebook"), ("x", "")],
)
def test_the_channel_is_named_in_rchats_words(value, channel):
    body = {"chat_id": "c", "message": {"type": "text", "data": "hi"}, "channel": value}
    assert parse(body).channel == channel


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1700000000500, datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("yesterday", None),
        (10**30, None),
        ("2023-02-30T00:00:00", None),
    ],
)
def test_timestamps_are_read_as_epoch_seconds_milliseconds_or_iso(value, expected):
    body = {"chat_id": "c", "message": {"type": "text", "data": "hi"}, "timestamp": value}
    assert parse(body).sent_at == expected


def test_an_avatar_that_is_not_an_http_url_is_not_used():
    body = {"chat_id": "c", "message": "hi", "user": {"avatar": "javascript:alert(1)"}}
    message = parse(body)
    assert message.avatar_url == ""
    assert message.extra["user"]["avatar"] == "javascript:alert(1)"


def test_nul_characters_and_lone_surrogates_become_storable():
    """PostgreSQL refuses both; the raw body (kept on the event) still has them."""
    message = parse(b'{"chat_id": "c\\u0000", "message": {"type": "text", "data": "a\\ud800b"}}')
    assert message.chat_id == "c\ufffd"
    assert "\ud800" not in message.data
    message.data.encode("utf-8")


@pytest.mark.parametrize(
    ("type", "data", "text"),
    [
        ("text", "สวัสดี 😀", "สวัสดี 😀"),
        ("text", {"text": "hello"}, "hello"),
        ("image", "https://cdn.example/p/photo.jpg", "[Image] photo.jpg"),
        ("image", {"url": "https://cdn.example/p/x.png", "caption": "my cat"}, "[Image] my cat"),
        ("file", {"url": "https://cdn.example/f/quote.pdf"}, "[File] quote.pdf"),
        ("file", {"name": "ใบเสนอราคา.pdf", "url": "https://x/1"}, "[File] ใบเสนอราคา.pdf"),
        ("sticker", {"package_id": "1", "sticker_id": "2"}, "[Sticker]"),
        (
            "location",
            {"title": "Siam Paragon", "latitude": 13.7, "longitude": 100.5},
            "[Location] Siam Paragon",
        ),
        ("location", {"latitude": 13.7, "longitude": 100.5}, "[Location] 13.7, 100.5"),
        ("poll", {"q": "Size?"}, '[poll] {"q":"Size?"}'),
        ("poll", "plain", "[poll] plain"),
    ],
)
def test_each_type_has_a_plain_text_rendering(type, data, text):
    assert inbound_text(type, data) == text


def test_an_unknown_types_rendering_is_short():
    assert len(inbound_text("blob", {"x": "y" * 1000})) <= 200
