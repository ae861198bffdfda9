"""MIME: real messages in (`parse_message`) and out (`build_message`), with the standard
library's `email` package and its modern policy. Pure: no I/O.

Parsing never raises: a malformed message (a header that does not parse, a missing
boundary, bad base64, an unknown charset) is read as far as it goes, and what was wrong is
listed in `defects`. Nothing is lost on the way: every leaf part of the message is the text
body, the HTML body, or an attachment (a nested `message/*` part is one attachment, the
message it holds as bytes).
"""

from __future__ import annotations

import codecs
import mimetypes
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from html import unescape
from html.parser import HTMLParser

from domain.common import rfc3339
from domain.text import clean

# Outgoing mail: CRLF line ends, and 7-bit content transfer encodings (quoted-printable or
# base64 for anything else), which every relay takes.
OUTGOING = policy.SMTP.clone(cte_type="7bit")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_HEADER_CHARS = 998


@dataclass(frozen=True)
class ParsedPart:
    """An attachment (or an inline part such as an image the HTML shows by `content_id`)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    from_addr: str  # the address alone ("" when none could be read)
    to: list[str]
    cc: list[str]
    reply_to: str | None
    subject: str
    date: str | None  # RFC 3339 in UTC
    text: str  # the text/plain body, or text made from the HTML one
    html: str | None  # the text/html body, as sent (not sanitised)
    attachments: list[ParsedPart]
    from_name: str = ""  # the display name of From
    defects: list[str] = field(default_factory=list)


def parse_message(raw: bytes) -> ParsedMail:
    """The message's headers, bodies and attachments; never raises on malformed input.

    The standard parser recurses once per level of nested multipart: a message nested
    deeper than the interpreter allows is read as its headers plus the whole message as one
    attachment (nothing is lost; the defect says why)."""
    try:
        return _parse(BytesParser(policy=policy.default).parsebytes(raw))
    except RecursionError:
        headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        flat = _parse(headers, leaves=False)
        return replace(
            flat,
            attachments=[ParsedPart("message.eml", "message/rfc822", raw)],
            defects=[*flat.defects, "the MIME structure is nested too deeply to read; kept whole"],
        )


def _parse(msg: EmailMessage, *, leaves: bool = True) -> ParsedMail:
    defects = _defects(msg)
    from_name, from_addr = _first_address(_addresses(msg, "from", defects))
    plain: str | None = None
    html: str | None = None
    attachments: list[ParsedPart] = []
    for index, part in enumerate(_leaves(msg) if leaves else ()):
        if part is not msg:
            defects.extend(_defects(part))
        kind = _content_type(part)
        data = _payload(part, defects)
        disposition = _disposition(part)
        named = part.get_param("filename", header="content-disposition") not in (None, "")
        is_attachment = disposition == "attachment" or named
        if not is_attachment and kind == "text/plain" and plain is None:
            plain = _text(part, data)
            continue
        if not is_attachment and kind == "text/html" and html is None:
            html = _text(part, data)
            continue
        content_id = _header(part, "content-id", defects) or None
        attachments.append(
            ParsedPart(
                filename=_filename(part, kind, index, defects),
                content_type=kind,
                data=data,
                content_id=content_id,
                inline=disposition == "inline" or (disposition is None and content_id is not None),
            )
        )
    reply_to = _addresses(msg, "reply-to", defects)
    return ParsedMail(
        message_id=_message_id(_header(msg, "message-id", defects)),
        in_reply_to=_message_id(_header(msg, "in-reply-to", defects)),
        references=_MESSAGE_ID.findall(_header(msg, "references", defects)),
        from_addr=from_addr,
        from_name=from_name,
        to=[addr for _, addr in _addresses(msg, "to", defects) if "@" in addr],
        cc=[addr for _, addr in _addresses(msg, "cc", defects) if "@" in addr],
        reply_to=reply_to[0][1] if reply_to and reply_to[0][1] else None,
        subject=_one_line(_header(msg, "subject", defects)),
        date=_date(_header(msg, "date", defects)),
        text=plain if plain is not None else (html_to_text(html) if html else ""),
        html=html,
        attachments=attachments,
        defects=defects,
    )


def build_message(
    *,
    from_addr: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    text: str | None,
    html: str | None = None,
    message_id: str,
    date: datetime,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    attachments: Sequence[ParsedPart] = (),
    from_name: str = "",
) -> bytes:
    """An RFC 5322 message (CRLF line ends): From, To, Cc (never Bcc: the envelope carries
    those), Subject (UTF-8 encoded words where needed), Date, Message-ID, In-Reply-To and
    References; the text and/or HTML body (both: multipart/alternative); the attachments
    (multipart/mixed around it). Raises ValueError on a header holding a line break."""
    msg = EmailMessage(policy=OUTGOING)
    msg["From"] = Address(display_name=from_name, addr_spec=from_addr) if from_name else from_addr
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if "\r" in subject or "\n" in subject:
        raise ValueError("a header may not hold a line break")
    msg["Date"] = format_datetime(date.astimezone(UTC))
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    if html is not None:
        msg.set_content(text if text is not None else html_to_text(html))
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(text or "")
    for part in attachments:
        maintype, _, subtype = part.content_type.partition("/")
        if not (maintype and subtype) or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            part.data,
            maintype=maintype,
            subtype=subtype,
            filename=part.filename,
            disposition="inline" if part.inline else "attachment",
            cid=part.content_id,
        )
    # The Subject is encoded apart: the library's folding drops the spaces between encoded
    # words of a long non-ASCII subject; Header keeps them inside the words.
    charset = "us-ascii" if subject.isascii() else "utf-8"
    folded = Header(subject, charset, header_name="Subject").encode(linesep="\r\n")
    return b"Subject: " + folded.encode("ascii") + b"\r\n" + msg.as_bytes()


def message_id_for(unique: str, address: str) -> str:
    """A Message-ID `<unique@domain>` on the sender's domain."""
    domain = address.rpartition("@")[2] or "localhost"
    return f"<{unique}@{domain}>"


# --- reading a message ---------------------------------------------------------------------


def _leaves(part: Message) -> Iterator[Message]:
    """The message's parts that hold content, in order; a `message/*` part is one leaf."""
    if part.get_content_maintype() == "message" and isinstance(part.get_payload(), list):
        yield part
        return
    if part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else ():
            if isinstance(child, Message):
                yield from _leaves(child)
        return
    yield part


def _payload(part: Message, defects: list[str]) -> bytes:
    """A leaf's content as bytes: decoded (base64, quoted-printable), or, for a nested
    message, the message it holds."""
    try:
        payload = part.get_payload()
        if isinstance(payload, list):  # message/rfc822 and the like
            return b"".join(_message_bytes(inner) for inner in payload)
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            return data
        return str(payload).encode("utf-8", "surrogateescape")
    except Exception as e:  # noqa: BLE001 - a malformed part is read as far as it goes
        defects.append(f"unreadable part: {type(e).__name__}: {e}")
        return b""


def _message_bytes(inner: object) -> bytes:
    if not isinstance(inner, Message):
        return str(inner).encode("utf-8", "surrogateescape")
    try:
        return inner.as_bytes(policy=inner.policy.clone(linesep="\n"))
    except Exception:  # noqa: BLE001 - a malformed nested message: its text as it came
        return str(inner).encode("utf-8", "surrogateescape")


def message_bytes(part: Message) -> bytes:
    """What `parse_message` keeps of a nested `message/*` part (for tests and tools)."""
    payload = part.get_payload()
    return b"".join(_message_bytes(m) for m in payload) if isinstance(payload, list) else b""


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:  # noqa: BLE001
        return None
    return value.lower() if value else None


def _text(part: Message, data: bytes) -> str:
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        codecs.lookup(charset)
    except Exception:  # noqa: BLE001 - an unknown or malformed charset: read as UTF-8
        charset = "utf-8"
    try:
        text = data.decode(charset, "replace")
    except Exception:  # noqa: BLE001 - a codec that fails anyway
        text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")  # lines end as in any text, not as on the wire


def _filename(part: Message, kind: str, index: int, defects: list[str]) -> str:
    name: str | None = None
    try:
        name = part.get_filename()
    except Exception as e:  # noqa: BLE001
        defects.append(f"unreadable filename: {type(e).__name__}: {e}")
    if name:
        name = _one_line(name).replace("/", "_").replace("\\", "_").strip()
    if name:
        return name[:255]
    if kind.startswith("message/"):
        return f"message-{index + 1}.eml"
    extension = mimetypes.guess_extension(kind) or ".bin"
    return f"part-{index + 1}{extension}"


def _header(msg: Message, name: str, defects: list[str]) -> str:
    """A header's value as text (encoded words decoded), "" when absent or unreadable."""
    try:
        value = msg.get(name)
        if value is None:
            return ""
        return _readable(str(value))
    except Exception as e:  # noqa: BLE001 - the library's parser fails on some input
        defects.append(f"unreadable {name} header: {type(e).__name__}: {e}")
    raw = _raw_header(msg, name)
    return _readable(raw) if raw is not None else ""


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _readable(text: str) -> str:
    """Text without lone surrogates (the bytes of undeclared 8-bit headers, read as UTF-8)
    or U+0000."""
    if any("\ud800" <= c <= "\udfff" for c in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return clean(text)


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()[:_MAX_HEADER_CHARS]


def _addresses(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    """(display name, address) of an address header, as far as it parses."""
    found: list[tuple[str, str]] = []
    try:
        header = msg.get(name)
        if header is None:
            return []
        for address in getattr(header, "addresses", ()):
            found.append((_one_line(_readable(address.display_name)), _address(address.addr_spec)))
        if found or not str(header).strip():
            return found
    except Exception as e:  # noqa: BLE001 - fall back to the lenient parser
        defects.append(f"unreadable {name} header: {type(e).__name__}: {e}")
    raw = _raw_header(msg, name) or ""
    return [
        (_one_line(_readable(display)), _address(addr))
        for display, addr in getaddresses([raw])
        if addr
    ]


def _address(addr: str) -> str:
    return _one_line(_readable(addr)).replace(" ", "")[:320]


def _first_address(found: list[tuple[str, str]]) -> tuple[str, str]:
    for display, addr in found:
        if addr:
            return display, addr
    return "", ""


def _message_id(value: str) -> str | None:
    found = _MESSAGE_ID.search(value)
    if found:
        return found.group(0)[:_MAX_HEADER_CHARS]
    value = value.strip()
    return f"<{value}>"[:_MAX_HEADER_CHARS] if value and " " not in value else None


def _date(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return rfc3339(when)
    except (ValueError, OverflowError):
        return None


def _defects(part: Message) -> list[str]:
    return [type(d).__name__ for d in getattr(part, "defects", ())]


# --- HTML as text --------------------------------------------------------------------------

_BLOCKS = {
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "table", "ul", "ol", "hr", "section", "article",
}  # fmt: skip
_HIDDEN = {"script", "style", "head", "title", "template"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The text an HTML body shows: tags dropped, scripts and styles left out, blocks on
    lines of their own."""
    parser = _Text()
    try:
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # noqa: BLE001 - HTMLParser is lenient; this is a last resort
        text = unescape(re.sub(r"<[^>]*>", " ", html))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
