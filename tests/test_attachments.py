"""Attachments: an agent's image or file, checked, kept in Django's storage, served at a
URL R-Chat can fetch but nobody can guess, and sent as an image or a file message, from
the inbox, admin and the API; inbound images as thumbnails, files as named links.

Files go to a real FileSystemStorage under the test's tmp_path (STORAGES overridden);
R-Chat is pytest-httpserver; the browser test drives Chromium.
"""

import base64
import struct
import zlib
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from rchat import services
from rchat.checks import check_settings
from rchat.exceptions import InvalidMessage
from rchat.models import Attachment, ChatRoom, Message
from rchat.services.attachments import _name_clean
from tests.factories import ChatRoomFactory, CredentialFactory, MessageFactory, user_with
from tests.test_api import answer_schema  # noqa: F401  (a fixture: responses against the schema)
from tests.test_delivery import memory_broker  # noqa: F401  (autouse: wake-ups stay in memory)

pytestmark = pytest.mark.django_db

SITE = "https://site.example"


def png_bytes(width=3, height=2):
    """A real PNG image (red pixels), made here: no imaging library needed."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png_bytes()
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>"


def plain(text):
    """Text as a person reads it: Django keeps a size and its unit together with a
    no-break space."""
    return text.replace("\xa0", " ")


def upload(name="photo.png", content=PNG, content_type="image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """Attachments go to a FileSystemStorage in this test's own directory."""
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


def stored_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def agent(client):
    user = user_with(first_name="Somsri")
    client.force_login(user)
    return user


@pytest.fixture
def room():
    return ChatRoomFactory(display_name="Malee")


def path_of(url):
    return urlsplit(url).path


# --- The service: what is kept, and as what ----------------------------------------------


def test_a_png_is_kept_in_the_storage_as_an_image(room, media):
    attachment = services.attachment_store(room=room, uploaded_by=None, upload=upload())
    attachment.refresh_from_db()
    assert (attachment.kind, attachment.content_type, attachment.name, attachment.size) == (
        "image",
        "image/png",
        "photo.png",
        len(PNG),
    )
    [kept] = stored_files(media)
    assert kept.read_bytes() == PNG
    # Under a directory named by the key: two uploads of one name never meet.
    assert kept.parent.name == attachment.key


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20, "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00" + b"\x00" * 20, "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20, "image/webp"),
        (PNG, "image/png"),
    ],
)
def test_an_image_is_known_by_its_first_bytes_whatever_its_name_says(content, content_type):
    """A JPEG named .png is a JPEG; the browser's content type is not asked."""
    checked = services.attachment_check(
        upload=upload("picture.png", content, content_type="application/octet-stream")
    )
    assert (checked.kind, checked.content_type) == ("image", content_type)


def test_html_named_png_is_refused_and_nothing_is_kept(room, media):
    with pytest.raises(InvalidMessage, match="is not a JPEG, PNG, GIF or WebP image") as refused:
        services.attachment_store(room=room, uploaded_by=None, upload=upload(content=HTML))
    assert "file" in refused.value.errors
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_a_file_over_the_limit_is_refused_with_the_limit_in_words(room, settings, media):
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_MAX_BYTES": 1024}
    with pytest.raises(InvalidMessage) as refused:
        services.attachment_store(
            room=room, uploaded_by=None, upload=upload("a.pdf", PDF + b" " * 2000)
        )
    assert plain(refused.value.errors["file"]) == (
        "The file is 2.0 KB; the largest accepted is 1.0 KB."
    )
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_a_type_not_accepted_is_refused_with_the_ones_that_are():
    with pytest.raises(InvalidMessage) as refused:
        services.attachment_check(upload=upload("setup.exe", b"MZ\x90\x00" + b"\x00" * 60, ""))
    reason = refused.value.errors["file"]
    assert reason.startswith("Files of this type are not accepted. Accepted: jpg, png, gif")
    assert "pdf" in reason and "docx" in reason


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("report.pdf", HTML, "is not the kind of file its name says"),
        ("sheet.xlsx", b"not a zip at all", "is not the kind of file its name says"),
        ("notes.txt", b"MZ\x00\x00\x01binary", "is not a text file"),
        ("empty.txt", b"", "The file is empty."),
    ],
)
def test_content_that_contradicts_its_name_is_refused(name, content, says):
    with pytest.raises(InvalidMessage, match=says):
        services.attachment_check(upload=upload(name, content, "application/octet-stream"))


def test_files_are_typed_by_name_and_content_not_by_the_browser():
    docx = services.attachment_check(upload=upload("ใบเสนอราคา.docx", b"PK\x03\x04" + b"\0" * 40))
    assert (docx.kind, docx.content_type) == (
        "file",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    # A text file that the browser calls an image is a text file.
    text = services.attachment_check(upload=upload("สินค้า.csv", "ชื่อ,ราคา\n".encode(), "image/png"))
    assert (text.kind, text.content_type) == ("file", "text/csv")
    # No extension: the content's type names it, so people can open the download.
    bare = services.attachment_check(upload=upload("scan", PNG, "text/html"))
    assert (bare.kind, bare.content_type, bare.name) == ("image", "image/png", "scan.png")
    # An extension the content contradicts is replaced by the content's.
    renamed = services.attachment_check(upload=upload("ราคา.exe", PDF, "application/pdf"))
    assert (renamed.content_type, renamed.name) == ("application/pdf", "ราคา.pdf")
    assert services.attachment_check(upload=upload("photo.jpg", PNG)).name == "photo.png"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("ใบเสร็จ รับเงิน.pdf", "ใบเสร็จ รับเงิน.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("C:\\Users\\somsri\\สลิปโอนเงิน.png", "สลิปโอนเงิน.png"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ('a<b>:"c"|d?*.txt', "a_b___c__d__.txt"),
        ("  many   \t spaces\n.pdf ", "many spaces.pdf"),
        ("...", "file"),
        ("ก" * 300 + ".pdf", "ก" * 116 + ".pdf"),
    ],
)
def test_names_are_made_safe_and_thai_stays_readable(given, kept):
    assert _name_clean(given) == kept


def test_the_key_has_256_bits_and_is_not_made_from_ids(room):
    """32 random bytes each: nothing about the row (its id, the room, the time, the
    name) is in it, so the URL of one attachment says nothing of the next one's."""
    kept = [
        services.attachment_store(room=room, uploaded_by=None, upload=upload()) for _ in range(20)
    ]
    for attachment in kept:
        assert len(base64.urlsafe_b64decode(attachment.key + "=")) == 32
        assert attachment.get_absolute_url() == f"/rchat/files/{attachment.key}/photo.png"
    keys = [attachment.key for attachment in kept]
    assert len(set(keys)) == 20
    # Consecutive ids, unrelated keys: no two share even their first 8 characters.
    assert len({key[:8] for key in keys}) == 20


# --- Serving: the URL R-Chat fetches -------------------------------------------------------


def test_an_image_is_served_inline_in_its_checked_type_without_a_login(client, room):
    attachment = services.attachment_store(room=room, uploaded_by=None, upload=upload("รูปสินค้า.png"))
    response = client.get(attachment.get_absolute_url())
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert (
        response["Content-Security-Policy"]
        == "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    )
    assert response["Content-Disposition"].startswith("inline; filename*=utf-8''")
    assert response["Referrer-Policy"] == "no-referrer"


def test_a_file_is_served_as_a_download_with_its_name(client, room):
    attachment = services.attachment_store(
        room=room, uploaded_by=None, upload=upload("Price list.pdf", PDF, "application/pdf")
    )
    response = client.get(attachment.get_absolute_url())
    assert b"".join(response.streaming_content) == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="Price list.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_an_unknown_key_or_a_lost_file_is_a_bare_404(client, room, media):
    attachment = services.attachment_store(room=room, uploaded_by=None, upload=upload())
    unknown = reverse("rchat:attachment", kwargs={"key": "x" * 43, "name": "photo.png"})
    too_long = reverse("rchat:attachment", kwargs={"key": "x" * 500, "name": "photo.png"})
    for url in (unknown, too_long):
        response = client.get(url)
        assert (response.status_code, response.content) == (404, b"")
    for kept in stored_files(media):
        kept.unlink()
    response = client.get(attachment.get_absolute_url())
    assert (response.status_code, response.content) == (404, b"")


def test_serving_reads_one_row(client, room, django_assert_num_queries):
    attachment = services.attachment_store(room=room, uploaded_by=None, upload=upload())
    with django_assert_num_queries(1):
        client.get(attachment.get_absolute_url())


# --- The reply box: the inbox and admin --------------------------------------------------


def inbox_post(client, room, **fields):
    fields.setdefault("type", "text")
    fields.setdefault("text", "")
    return client.post(reverse("rchat:inbox-room", kwargs={"pk": room.pk}), fields)


def test_a_png_chosen_in_the_inbox_queues_an_image_message_whose_url_serves_it(client, agent, room):
    response = inbox_post(client, room, file=upload("สินค้า.png"))
    assert response.status_code == 302
    sent = Message.objects.get(direction="out")
    attachment = Attachment.objects.get()
    assert (sent.type, sent.author, attachment.uploaded_by) == ("image", agent, agent)
    # The Thai name percent-encoded in the URL, readable in the message.
    encoded = "%E0%B8%AA%E0%B8%B4%E0%B8%99%E0%B8%84%E0%B9%89%E0%B8%B2.png"
    assert sent.data == {
        "url": f"{SITE}/rchat/files/{attachment.key}/{encoded}",
        "name": "สินค้า.png",
    }
    fetched = client.get(path_of(sent.data["url"]))
    assert b"".join(fetched.streaming_content) == PNG


def test_a_pdf_chosen_under_another_type_is_sent_as_a_file_and_the_text_after_it(
    client, agent, room
):
    """The file wins over the picked type; the message typed beside it follows it."""
    inbox_post(
        client,
        room,
        type="sticker",
        text="  ใบเสนอราคาค่ะ  ",
        file=upload("quote.pdf", PDF, "application/pdf"),
    )
    first, second = Message.objects.filter(direction="out").order_by("id")
    assert (first.type, first.data["name"]) == ("file", "quote.pdf")
    assert (second.type, second.data) == ("text", "ใบเสนอราคาค่ะ")


@pytest.mark.parametrize(
    ("file", "says"),
    [
        (upload("big.pdf", PDF + b" " * 5000, "application/pdf"), "the largest accepted is 4.0 KB"),
        (upload("evil.png", HTML), "is not a JPEG, PNG, GIF or WebP image"),
        (upload("tool.exe", b"MZ" + b"\0" * 10, "application/x-msdownload"), "not accepted"),
    ],
)
def test_a_refused_file_is_a_form_error_in_the_inbox_and_nothing_is_kept(
    client, agent, room, settings, media, file, says
):
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_MAX_BYTES": 4096}
    response = inbox_post(client, room, text="this text is not lost", file=file)
    assert response.status_code == 200
    page = plain(response.content.decode())
    assert says in page and "this text is not lost" in page
    assert not Message.objects.filter(direction="out").exists()
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_a_large_upload_streamed_to_a_temporary_file_is_a_form_error_not_a_500(
    client, agent, room, settings, media
):
    """Above FILE_UPLOAD_MAX_MEMORY_SIZE Django writes the upload to a temporary file;
    DATA_UPLOAD_MAX_MEMORY_SIZE does not count files. Either way: the limit's error."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_MAX_BYTES": 8 * 1024}
    response = inbox_post(client, room, file=upload("big.pdf", PDF + b" " * 20_000))
    assert response.status_code == 200
    assert "the largest accepted is 8.0 KB" in plain(response.content.decode())
    assert not Attachment.objects.exists() and stored_files(media) == []
    # Within the limit, the temporary file is kept like any other.
    assert inbox_post(client, room, file=upload("ok.pdf", PDF + b" " * 5000)).status_code == 302
    assert Attachment.objects.get().size == len(PDF) + 5000


def test_a_closed_room_refuses_the_file_and_keeps_nothing(client, agent, media):
    room = ChatRoomFactory(status=ChatRoom.Status.CLOSED)
    response = inbox_post(client, room, file=upload())
    assert response.status_code == 200 and "closed" in response.content.decode()
    assert not Message.objects.filter(direction="out").exists()
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_without_site_url_the_url_is_on_the_host_the_agent_came_to(client, agent, room, settings):
    settings.RCHAT = {**settings.RCHAT, "SITE_URL": ""}
    inbox_post(client, room, file=upload())
    url = Message.objects.get(direction="out").data["url"]
    assert url.startswith("http://testserver/rchat/files/")


def test_the_reply_box_is_multipart_and_offers_a_file_unless_attachments_are_off(
    client, agent, room, settings
):
    page = plain(client.get(reverse("rchat:inbox-room", kwargs={"pk": room.pk})).content.decode())
    assert 'enctype="multipart/form-data"' in page and 'type="file" name="file"' in page
    assert "Up to 10.0 MB: jpg, png, gif, webp, pdf, txt, csv, zip, docx, xlsx." in page
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_TYPES": []}
    page = client.get(reverse("rchat:inbox-room", kwargs={"pk": room.pk})).content.decode()
    assert 'type="file"' not in page
    response = inbox_post(client, room, text="hi", file=upload())
    assert response.status_code == 302 and not Attachment.objects.exists()


def admin_post(client, room, **fields):
    fields.setdefault("type", "text")
    fields.setdefault("text", "")
    url = reverse("admin:rchat_chatroom_change", args=[room.pk])
    return client.post(url, {"_reply": "1", **{f"reply-{k}": v for k, v in fields.items()}})


def test_a_file_chosen_in_admin_queues_a_file_message_whose_url_serves_it(client, operator, room):
    response = admin_post(client, room, file=upload("ราคา.pdf", PDF, "application/pdf"))
    assert response.status_code == 302
    sent = Message.objects.get(direction="out")
    assert (sent.type, sent.data["name"], sent.author) == ("file", "ราคา.pdf", operator)
    assert sent.data["url"].startswith(f"{SITE}/rchat/files/")
    assert b"".join(client.get(path_of(sent.data["url"])).streaming_content) == PDF


def test_a_refused_file_is_a_form_error_in_admin_and_nothing_is_kept(client, operator, room, media):
    response = admin_post(client, room, file=upload("evil.png", HTML))
    assert response.status_code == 200
    assert "is not a JPEG, PNG, GIF or WebP image" in response.content.decode()
    assert not Message.objects.filter(direction="out").exists()
    assert stored_files(media) == []


def test_the_broadcast_form_has_no_file(client, operator):
    from rchat.admin import BroadcastForm

    assert "file" not in BroadcastForm().fields


# --- Delivery: what R-Chat receives ------------------------------------------------------


def test_r_chat_receives_the_absolute_url_and_the_name(
    client, agent, httpserver, django_capture_on_commit_callbacks
):
    from tests.test_browser import SEND_PATH

    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    credential = CredentialFactory(base_url=httpserver.url_for("").rstrip("/"))
    room = ChatRoomFactory(credential=credential, chat_id="line-77")
    inbox_post(client, room, file=upload("แผนที่ร้าน.png"))
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_drain(batches=1)
    sent = Message.objects.get(direction="out")
    assert sent.status == "sent"
    [(request, _response)] = httpserver.log
    message = request.get_json()["message"]
    assert message == {"type": "image", "data": sent.data}
    assert message["data"]["url"].startswith(f"{SITE}/rchat/files/{Attachment.objects.get().key}/")
    assert message["data"]["name"] == "แผนที่ร้าน.png"


# --- The API --------------------------------------------------------------------------


@pytest.fixture
def api():
    from django.core.cache import cache

    cache.clear()  # the rate limits count in the cache
    client = APIClient()
    client.user = user_with()
    client.force_authenticate(client.user)
    return client


def attachments_url(room):
    return reverse("rchat:api:room-attachments", kwargs={"pk": room.pk})


def test_api_upload_answers_the_url_and_the_message_to_send(
    api,
    room,
    answer_schema,  # noqa: F811
):
    response = api.post(attachments_url(room), {"file": upload("ป้าย.png")}, format="multipart")
    assert response.status_code == 201, response.content
    answer_schema(response, "/rchat/api/rooms/{id}/attachments/", "post")
    body = response.json()
    attachment = Attachment.objects.get()
    assert body["url"] == f"{SITE}{attachment.get_absolute_url()}"
    assert (body["kind"], body["name"], body["size"]) == ("image", "ป้าย.png", len(PNG))
    assert body["message"] == {"type": "image", "data": {"url": body["url"], "name": "ป้าย.png"}}
    assert attachment.uploaded_by == api.user
    # The answer's message is a reply the API accepts as it is.
    messages = reverse("rchat:api:room-messages", kwargs={"pk": room.pk})
    reply = api.post(messages, body["message"], format="json")
    assert reply.status_code == 201 and Message.objects.get(direction="out").type == "image"


@pytest.mark.parametrize(
    ("files", "field", "says"),
    [
        ({}, "file", "No file was submitted."),
        ({"file": upload("evil.png", HTML)}, "file", "is not a JPEG, PNG, GIF or WebP image"),
        ({"file": upload("big.pdf", PDF + b" " * 3000)}, "file", "the largest accepted is 2.0 KB"),
    ],
)
def test_api_upload_refusals_are_400_with_a_reason_and_keep_nothing(
    api,
    room,
    settings,
    media,
    answer_schema,  # noqa: F811
    files,
    field,
    says,
):
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_MAX_BYTES": 2048}
    response = api.post(attachments_url(room), files, format="multipart")
    assert response.status_code == 400
    answer_schema(response, "/rchat/api/rooms/{id}/attachments/", "post")
    assert says in plain(str(response.json()["errors"][field]))
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_api_upload_needs_the_reply_permission(room):
    client = APIClient()
    client.force_authenticate(user_with("view_chatroom"))
    response = client.post(attachments_url(room), {"file": upload()}, format="multipart")
    assert response.status_code == 403 and not Attachment.objects.exists()


# --- Admin's list of attachments ---------------------------------------------------------


def test_admin_lists_attachments_read_only_and_deleting_one_deletes_its_file(
    client, operator, room, media
):
    attachment = services.attachment_store(
        room=room, uploaded_by=operator, upload=upload("ใบเสร็จ.pdf", PDF * 40, "application/pdf")
    )
    page = plain(client.get(reverse("admin:rchat_attachment_changelist")).content.decode())
    assert "ใบเสร็จ.pdf" in page and "3.0 KB" in page and attachment.get_absolute_url() in page
    assert client.get(reverse("admin:rchat_attachment_add")).status_code == 403
    change = client.get(reverse("admin:rchat_attachment_change", args=[attachment.pk]))
    assert change.status_code == 200 and 'type="file"' not in change.content.decode()
    client.post(reverse("admin:rchat_attachment_delete", args=[attachment.pk]), {"post": "yes"})
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_admin_list_of_attachments_runs_the_same_queries_for_more_rows(
    client, operator, room, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def list_queries():
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("admin:rchat_attachment_changelist")).status_code == 200
        return len(queries)

    services.attachment_store(room=room, uploaded_by=operator, upload=upload())
    few = list_queries()
    for _ in range(8):
        other = ChatRoomFactory()
        services.attachment_store(room=other, uploaded_by=user_with(), upload=upload())
    with django_assert_max_num_queries(few):
        client.get(reverse("admin:rchat_attachment_changelist"))


# --- Inbound images and files -------------------------------------------------------------


def test_inbound_images_are_lazy_thumbnails_and_files_named_links(client, agent, room):
    MessageFactory(room=room, type="image", data={"url": "https://cdn.example/p/รูป.jpg"})
    MessageFactory(room=room, type="file", data={"url": "https://cdn.example/f/%E0%B8%81.pdf"})
    MessageFactory(
        room=room, type="file", data={"url": "https://cdn.example/x", "name": "สัญญา.pdf"}
    )
    MessageFactory(room=room, type="image", data={"url": "javascript:alert(1)"})
    page = client.get(reverse("rchat:inbox-room", kwargs={"pk": room.pk})).content.decode()
    assert (
        '<img src="https://cdn.example/p/รูป.jpg" class="rchat-thumb" alt="Image" loading="lazy" '
        'decoding="async" referrerpolicy="no-referrer">'
    ) in page
    assert ">📎 ก.pdf</a>" in page and ">📎 สัญญา.pdf</a>" in page
    assert "javascript:" not in page


# --- Configuration checks -----------------------------------------------------------------


def ids(messages):
    return [m.id for m in messages]


def test_w006_warns_without_a_site_url_in_production(settings):
    settings.DEBUG = False
    settings.RCHAT = {**settings.RCHAT, "SITE_URL": ""}
    assert "rchat.W006" in ids(check_settings())
    settings.DEBUG = True
    assert "rchat.W006" not in ids(check_settings())
    settings.DEBUG = False
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_TYPES": []}
    assert "rchat.W006" not in ids(check_settings())
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_TYPES": ["image/png"], "SITE_URL": SITE}
    assert "rchat.W006" not in ids(check_settings())


def test_e012_names_an_attachment_storage_that_is_not_configured(settings):
    settings.RCHAT = {**settings.RCHAT, "ATTACHMENT_STORAGE": "s3"}
    [error] = [m for m in check_settings() if m.id == "rchat.E012"]
    assert "'s3'" in error.msg
    settings.STORAGES = {**settings.STORAGES, "s3": settings.STORAGES["default"]}
    assert "rchat.E012" not in ids(check_settings())


def test_the_project_s_attachment_setup_passes_the_checks():
    assert not {"rchat.W006", "rchat.E012"} & set(ids(check_settings()))


# --- In a browser ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_agent_attaches_a_png_sends_it_and_sees_the_image_sent(
    browser,
    live_server,
    httpserver,
    celery_eager,
    settings,
    tmp_path,
):
    """Choose a PNG in the inbox, Send: the bubble shows the picture, then "Sent" once
    R-Chat (pytest-httpserver) took the message with the picture's absolute URL."""
    from tests.test_browser import SEND_PATH, WAIT_MS, log_in, make_agent

    settings.RCHAT = {**settings.RCHAT, "SITE_URL": live_server.url}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    credential = CredentialFactory(base_url=httpserver.url_for("").rstrip("/"))
    room = ChatRoomFactory(credential=credential, display_name="สมหญิง")
    MessageFactory(room=room, data="ขอดูรูปสินค้าหน่อยค่ะ")
    agent = make_agent("attach")
    picture = tmp_path / "สินค้า.png"
    picture.write_bytes(png_bytes(40, 30))

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    log_in(page, live_server, agent)
    page.goto(f"{live_server.url}/rchat/inbox/{room.pk}/")
    page.set_input_files("input[type=file][name=file]", str(picture))
    page.locator("[data-rchat-attach-chosen]", has_text="สินค้า.png").wait_for(timeout=WAIT_MS)
    page.click("input[type=submit].rchat-send")

    bubble = page.locator(".rchat-msg-out.rchat-msg").last
    image = bubble.locator("img.rchat-thumb")
    image.wait_for(timeout=WAIT_MS)
    bubble.locator(".rchat-status-sent").wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 40", arg=image.element_handle()
    )
    sent = Message.objects.get(direction="out")
    assert (sent.type, sent.status, sent.data["name"]) == ("image", "sent", "สินค้า.png")
    [(request, _response)] = httpserver.log
    assert request.get_json()["message"] == {"type": "image", "data": sent.data}
    assert sent.data["url"].startswith(f"{live_server.url}/rchat/files/")
    assert image.get_attribute("src") == sent.data["url"]
    assert script_errors == []
    page.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_sandbox_shows_an_image_it_received_as_a_picture_and_a_file_as_a_named_link(
    browser,
    live_server,
    sandbox,
    settings,
):
    """What the site sends to the sandbox looks as it would in the end user's app: the
    picture (fetched from the site's attachment URL) and the file's name."""
    from rchat.client import RChatClient
    from rchat.sandbox import chat_url
    from tests.test_browser import WAIT_MS

    settings.RCHAT = {**settings.RCHAT, "SITE_URL": live_server.url}
    room = ChatRoomFactory(chat_id="web-attach")
    picture = services.attachment_store(room=room, uploaded_by=None, upload=upload("ร้าน.png"))
    document = services.attachment_store(
        room=room, uploaded_by=None, upload=upload("ราคา.pdf", PDF, "application/pdf")
    )
    rchat = RChatClient(base_url=sandbox.url, token="cdt_sandbox_attachments")
    rchat.register()
    for attachment in (picture, document):
        type, data = services.attachment_message(attachment=attachment)
        rchat.send_message("web-attach", type, data)

    page = browser.new_page(viewport={"width": 1000, "height": 700})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(chat_url(sandbox.url, "web-attach"))
    image = page.locator("#thread img.thumb")
    image.wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 3", arg=image.element_handle()
    )
    link = page.locator("#thread a.file", has_text="ราคา.pdf")
    assert link.get_attribute("href") == f"{live_server.url}{document.get_absolute_url()}"
    assert script_errors == []
    page.close()
