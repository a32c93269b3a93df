"""Attachments: an image or a file an agent (or a bot) uploads, kept and sent.

``attachment_check`` says whether an upload may be kept, and as what, without keeping
anything; ``attachment_store`` keeps it in Django's storage (``RCHAT["ATTACHMENT_STORAGE"]``);
``attachment_send`` keeps it and queues the image or file message that carries its URL,
through ``message_send`` like every other reply. R-Chat fetches the file from
``attachment_url``: ``rchat:attachment`` with the attachment's 256-bit key, the only
secret guarding it (R-Chat signs in nowhere).

The type is never taken from the browser or the file name alone. An image is an image
only when its first bytes say so (JPEG, PNG, GIF, WebP): a ``.png`` that holds HTML is
refused, and nothing is ever served as HTML. For other files the name's extension
says the type, and the first bytes must not contradict it (a ``.pdf`` starts with
``%PDF-``, a ``.docx`` is a ZIP, a ``.txt`` holds no NUL bytes).
"""

import codecs
import mimetypes
import unicodedata
from dataclasses import dataclass
from urllib.parse import urljoin

from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext

from ..conf import get_setting
from ..exceptions import InvalidMessage, RChatConfigurationError
from ..models import Attachment
from .outbound import message_send

#: The most of a file read to tell its type.
HEAD_BYTES = 8192
#: The longest file name kept (the extension included).
NAME_MAX = 120

# Raster images a browser shows as they are, by their first bytes. Only these are sent
# (and served) as images; any other image type a site allows (SVG, which can carry a
# script; HEIC, which few browsers show) is a file.
_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# Types whose files are ZIP archives (their first bytes are a ZIP's).
_ZIP_TYPES = frozenset(
    {
        "application/zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/epub+zip",
    }
)
# The standard library's own table, without the machine's /etc/mime.types (which would
# make the accepted types differ from one server to the next), and what it lacks.
_MIME = mimetypes.MimeTypes()
for _type, _extension in (
    ("image/webp", ".webp"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
    ("application/vnd.oasis.opendocument.text", ".odt"),
    ("application/vnd.oasis.opendocument.spreadsheet", ".ods"),
    ("application/vnd.oasis.opendocument.presentation", ".odp"),
    ("application/epub+zip", ".epub"),
):
    _MIME.add_type(_type, _extension)

# Characters no file name should hold on any system R-Chat's users save files on.
_RESERVED = set('<>:"/\\|?*')


@dataclass(frozen=True)
class CheckedUpload:
    """What ``attachment_check`` found: the message type, the content type, the name."""

    kind: str  # Attachment.Kind: "image" or "file"
    content_type: str
    name: str
    size: int


def _refuse(reason):
    raise InvalidMessage(reason, errors={"file": reason})


def _sniff(head):
    """The type the first bytes prove: an image type, a PDF, a ZIP, or None."""
    for signature, content_type in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "application/zip"
    return None


def _looks_like_text(head):
    # UTF-16 (a BOM) has NUL bytes by nature; any other text, in UTF-8 or in Thai's
    # TIS-620 / Windows-874 that Excel still writes, has none.
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    return b"\x00" not in head


def _name_clean(name):
    """The uploaded name, safe to show and to put in a URL or a header; Thai kept.

    The last path part only; control and format characters dropped (a right-to-left
    override could make "gpj.exe" look like "exe.jpg"); characters Windows refuses
    turned into "_"; runs of white space one space; at most ``NAME_MAX`` characters,
    the extension kept.
    """
    name = unicodedata.normalize("NFC", str(name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = []
    for ch in name:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch).startswith("C"):
            continue
        else:
            kept.append("_" if ch in _RESERVED else ch)
    name = " ".join("".join(kept).split()).strip(" .")
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    extension = extension[:16]
    stem = stem.strip(" .") or "file"
    suffix = f".{extension}" if extension else ""
    return stem[: NAME_MAX - len(suffix)].rstrip(" .") + suffix


def _extension_for(content_type):
    return _MIME.guess_extension(content_type) or ""


def accepted_types_text():
    """The accepted types as their extensions, for a reason: "jpg, png, pdf"."""
    names = []
    for content_type in get_setting("ATTACHMENT_TYPES"):
        extension = _extension_for(content_type).lstrip(".") or content_type
        if extension not in names:
            names.append(extension)
    return ", ".join(names)


def accepted_types_accept():
    """The accepted types and their extensions, for a file input's ``accept``: some
    systems know a CSV by its extension only."""
    accept = []
    for content_type in get_setting("ATTACHMENT_TYPES"):
        for each in (content_type, _extension_for(content_type)):
            if each and each not in accept:
                accept.append(each)
    return accept


def attachment_check(*, upload):
    """Whether ``upload`` (a Django ``UploadedFile``) may be kept, and as what.

    Returns a ``CheckedUpload``; raises ``InvalidMessage`` with ``errors["file"]`` (an
    empty file, one over ``RCHAT["ATTACHMENT_MAX_BYTES"]``, a type not in
    ``RCHAT["ATTACHMENT_TYPES"]``, one whose content contradicts its name). Keeps
    nothing, and leaves the upload at its start.
    """
    allowed = set(get_setting("ATTACHMENT_TYPES"))
    if not allowed:
        _refuse(gettext("Attachments are turned off on this site."))
    limit = get_setting("ATTACHMENT_MAX_BYTES")
    size = upload.size or 0
    if size == 0:
        _refuse(gettext("The file is empty."))
    if size > limit:
        _refuse(
            gettext("The file is %(size)s; the largest accepted is %(limit)s.")
            % {"size": filesizeformat(size), "limit": filesizeformat(limit)}
        )
    upload.seek(0)
    head = upload.read(HEAD_BYTES)
    upload.seek(0)
    name = _name_clean(getattr(upload, "name", ""))
    sniffed = _sniff(head)
    named, _encoding = _MIME.guess_type(name, strict=False)
    # Without an extension, what the browser said, which is checked like a name's.
    claimed = named or (getattr(upload, "content_type", "") or "").split(";")[0].strip().lower()
    if sniffed in IMAGE_TYPES:
        content_type = sniffed
    elif claimed in IMAGE_TYPES:
        _refuse(
            gettext("“%(name)s” is not a JPEG, PNG, GIF or WebP image, whatever its name says.")
            % {"name": name}
        )
    elif sniffed == "application/pdf":
        content_type = sniffed
    elif sniffed == "application/zip":
        content_type = claimed if claimed in _ZIP_TYPES else sniffed
    elif claimed == "application/pdf" or claimed in _ZIP_TYPES:
        _refuse(gettext("“%(name)s” is not the kind of file its name says.") % {"name": name})
    elif claimed.startswith("text/") and not _looks_like_text(head):
        _refuse(gettext("“%(name)s” is not a text file.") % {"name": name})
    else:
        content_type = claimed or "application/octet-stream"
    if content_type not in allowed:
        _refuse(
            gettext("Files of this type are not accepted. Accepted: %(types)s.")
            % {"types": accepted_types_text()}
        )
    if not named:
        # A name without an extension gets its type's, so that people who download
        # it (and R-Chat's apps) can open it.
        name = _name_clean(name + _extension_for(content_type))
    elif named != content_type:
        # The content said otherwise (a PNG named .jpg, a PDF named .exe): the name
        # ends as the content is, so no one's computer opens it as something else.
        name = _name_clean(name.rpartition(".")[0] + _extension_for(content_type))
    kind = Attachment.Kind.IMAGE if content_type in IMAGE_TYPES else Attachment.Kind.FILE
    return CheckedUpload(kind=kind, content_type=content_type, name=name, size=size)


def attachment_store(*, room, uploaded_by, upload, checked=None):
    """Keep ``upload`` for ``room`` in the attachments' storage; returns the Attachment.

    ``attachment_check`` first (``checked``: its answer, when the caller has it), so a
    refused upload raises ``InvalidMessage`` and keeps nothing. The file is written
    under a directory named by the new key, in its checked type.
    """
    checked = checked or attachment_check(upload=upload)
    attachment = Attachment(
        room=room,
        uploaded_by=uploaded_by,
        kind=checked.kind,
        name=checked.name,
        content_type=checked.content_type,
        size=checked.size,
    )
    upload.seek(0)
    # The storage writes the file first; if the row then cannot be saved, the file
    # goes too, so nothing is kept that nothing points to.
    attachment.file.save(checked.name, upload, save=False)
    try:
        attachment.save()
    except BaseException:
        attachment.file.delete(save=False)
        raise
    return attachment


def attachment_delete(*, attachment):
    """Delete an attachment: its file in the storage, then its row."""
    if attachment.file:
        attachment.file.delete(save=False)
    attachment.delete()


def attachment_url(*, attachment, request=None):
    """The absolute URL R-Chat fetches ``attachment`` from.

    On ``RCHAT["SITE_URL"]`` when it is set, else on the origin ``request`` came to
    (its Host, which Django has checked against ALLOWED_HOSTS). Without either, raises
    ``RChatConfigurationError``: R-Chat cannot fetch a URL without an origin.
    """
    path = attachment.get_absolute_url()
    site = get_setting("SITE_URL")
    if site:
        return urljoin(site, path)
    if request is not None:
        return request.build_absolute_uri(path)
    raise RChatConfigurationError(
        'Set RCHAT["SITE_URL"] to the site\'s public origin: an attachment sent without '
        "a request needs it for the URL R-Chat fetches the file from."
    )


def attachment_message(*, attachment, request=None):
    """``(type, data)`` of the message that sends ``attachment``."""
    data = {"url": attachment_url(attachment=attachment, request=request), "name": attachment.name}
    return attachment.kind, data


def attachment_send(*, room, author, upload, request=None, sender=None, checked=None):
    """Keep ``upload`` and queue the image or file message that sends it.

    Returns ``(attachment, message)``. What ``attachment_check`` or ``message_send``
    refuses (a file too large, a closed room) raises ``InvalidMessage`` and keeps
    nothing: neither the file, nor its row, nor a message.
    """
    attachment = attachment_store(room=room, uploaded_by=author, upload=upload, checked=checked)
    try:
        type, data = attachment_message(attachment=attachment, request=request)
        message = message_send(room=room, type=type, data=data, author=author, sender=sender)
    except BaseException:
        attachment_delete(attachment=attachment)
        raise
    return attachment, message
