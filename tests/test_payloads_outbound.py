"""Outbound validation: what a sender may send per message type, and the reasons given."""

import pytest

from rchat.exceptions import InvalidMessage
from rchat.payloads import outbound_preview, outbound_validate


def reasons(type, data):
    with pytest.raises(InvalidMessage) as caught:
        outbound_validate(type, data)
    return caught.value.errors


def test_text_is_stripped():
    assert outbound_validate("text", "  hello  ") == "hello"


@pytest.mark.parametrize("data", ["", "   \n\t", None, 42, {"text": "hi"}])
def test_text_must_be_a_non_empty_string(data):
    assert "data" in reasons("text", data)


def test_text_longer_than_the_limit_is_refused_with_the_limit(settings):
    settings.RCHAT = {**settings.RCHAT, "TEXT_MAX_LENGTH": 10}
    assert outbound_validate("text", "x" * 10) == "x" * 10
    errors = reasons("text", "x" * 11)
    assert "10" in errors["data"] and "11" in errors["data"]


@pytest.mark.parametrize("type", ["image", "file"])
@pytest.mark.parametrize(
    "data",
    ["https://cdn.example/a.png", "http://cdn.example/a.pdf", {"url": "https://x.example/f"}],
)
def test_media_accepts_a_url_string_or_an_object_with_url(type, data):
    assert outbound_validate(type, data) == data


def test_media_object_keeps_extra_fields():
    data = {"url": "https://x.example/f.pdf", "name": "invoice.pdf"}
    assert outbound_validate("file", data) == data


@pytest.mark.parametrize(
    "data",
    ["ftp://x.example/a", "javascript:alert(1)", "not a url", "", None, {}, {"url": 3}],
)
def test_media_needs_an_http_url(data):
    assert "url" in reasons("image", data)


def test_sticker_needs_package_and_sticker_ids():
    assert outbound_validate("sticker", {"package_id": "11537", "sticker_id": 52002734})
    errors = reasons("sticker", {"package_id": "", "sticker_id": True})
    assert set(errors) == {"package_id", "sticker_id"}
    assert "data" in reasons("sticker", "11537/52002734")


def test_location_accepts_coordinates_with_title_and_address():
    data = {"latitude": 13.7563, "longitude": 100.5018, "title": "Bangkok", "address": "Siam"}
    assert outbound_validate("location", data) == data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"latitude": 90.1, "longitude": 0}, "latitude"),
        ({"latitude": -91, "longitude": 0}, "latitude"),
        ({"latitude": 0, "longitude": 180.5}, "longitude"),
        ({"latitude": 0, "longitude": -181}, "longitude"),
        ({"latitude": "13.7", "longitude": 100}, "latitude"),
        ({"latitude": True, "longitude": 100}, "latitude"),
        ({"longitude": 100}, "latitude"),
        ({"latitude": 0, "longitude": 0, "title": 5}, "title"),
    ],
)
def test_location_out_of_range_or_malformed_is_refused(data, field):
    assert field in reasons("location", data)


def test_location_bounds_are_inclusive():
    assert outbound_validate("location", {"latitude": -90, "longitude": 180})


@pytest.mark.parametrize(
    ("type", "data"),
    [
        ("text", "hello\x00"),
        ("image", {"url": "https://example.com/a.png", "name": "a\x00.png"}),
        ("location", {"latitude": 1, "longitude": 2, "title": "\ud800"}),
        ("sticker", {"package_id": 1, "sticker_id": 2, "\x00": []}),
    ],
    ids=["text-nul", "media-nul", "location-surrogate", "sticker-nul-key"],
)
def test_strings_the_database_cannot_store_are_refused(type, data):
    """PostgreSQL refuses NUL and lone surrogates: a clear error, not a 500 on save."""
    with pytest.raises(InvalidMessage) as caught:
        outbound_validate(type, data)
    assert set(caught.value.errors) == {"data"}
    assert "NUL" in caught.value.errors["data"]


def test_unknown_type_is_refused_naming_the_known_ones():
    with pytest.raises(InvalidMessage) as caught:
        outbound_validate("video", "https://x.example/v.mp4")
    assert "video" in str(caught.value)
    assert "location" in caught.value.errors["type"]


def test_preview_is_short_plain_text():
    assert outbound_preview("text", "a\n b") == "a b"
    assert len(outbound_preview("text", "x" * 1000)) == 200
    assert "invoice.pdf" in outbound_preview("file", {"url": "https://x/f", "name": "invoice.pdf"})
    assert "Bangkok" in outbound_preview(
        "location", {"latitude": 1, "longitude": 2, "title": "Bangkok"}
    )
