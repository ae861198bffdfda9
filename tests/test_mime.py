"""MIME parsing and building (commands.mime) on real messages: CPython's own test messages in
../shared/mime/ parse without loss, and fixtures of ours (tests/fixtures/mime/) cover
multipart/alternative, mixed with attachments, RFC 2047 encoded words, RFC 2231 file names
and broken MIME, so a fresh clone tests them too."""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import Message
from pathlib import Path

import pytest

from commands.mime import ParsedMail, ParsedPart, build_message, html_to_text, parse_message

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "mime"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mime"
SHARED_FILES = sorted(SHARED.glob("msg_*.txt")) if SHARED.is_dir() else []


def fixture(name: str) -> ParsedMail:
    return parse_message((FIXTURES / name).read_bytes())


# --- without loss: every part of every real message is accounted for ------------------------


def _walk(part: Message, inside: Message | None = None) -> Iterator[tuple[Message, Message | None]]:
    """The stdlib's view of a message: every leaf part, with the outermost `message/*` part
    it is inside of (None: at the top level). Containers are multipart or message parts."""
    if part.is_multipart():
        nested = part.get_content_maintype() == "message"
        for child in part.get_payload():
            assert isinstance(child, Message)
            yield from _walk(child, part if nested and inside is None else inside)
        return
    yield part, inside


def _decoded(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _text(part: Message) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        text = _decoded(part).decode(charset, "replace")
    except LookupError:
        text = _decoded(part).decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _assert_without_loss(raw: bytes) -> ParsedMail:
    parsed = parse_message(raw)
    msg = email.message_from_bytes(raw, policy=policy.default)
    leaves = list(_walk(msg))
    top = [leaf for leaf, inside in leaves if inside is None]
    nested = list(dict.fromkeys(id(inside) for _, inside in leaves if inside is not None))
    # Each top-level leaf is one attachment, byte for byte, or else the text or HTML body.
    unclaimed = Counter(
        p.data for p in parsed.attachments if not p.content_type.startswith("message/")
    )
    bodies = [b for b in (parsed.text, parsed.html) if b is not None]
    body_leaves = 0
    for leaf in top:
        data = _decoded(leaf)
        if unclaimed[data] > 0:
            unclaimed[data] -= 1
            continue
        assert leaf.get_content_maintype() == "text", (leaf.get_content_type(), data[:80])
        assert _text(leaf) in bodies, (_text(leaf)[:80], [b[:80] for b in bodies])
        body_leaves += 1
    assert not +unclaimed, "attachments the message does not hold"
    assert body_leaves <= 2
    # Each nested message is one attachment, and nothing else is.
    messages = [p for p in parsed.attachments if p.content_type.startswith("message/")]
    assert len(messages) == len(nested)
    assert len(parsed.attachments) == len(top) - body_leaves + len(nested)
    # Headers as the library reads them.
    subject = msg.get("subject")
    if subject is not None:
        assert parsed.subject == _one_line(str(subject))
    sender = msg.get("from")
    addresses = getattr(sender, "addresses", ()) if sender is not None else ()
    if addresses and addresses[0].addr_spec:
        assert parsed.from_addr == addresses[0].addr_spec.replace(" ", "")
    return parsed


@pytest.mark.skipif(not SHARED_FILES, reason=f"{SHARED} is absent (the shared MIME samples)")
@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.name)
def test_every_shared_sample_parses_without_loss(path: Path) -> None:
    _assert_without_loss(path.read_bytes())


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.eml")), ids=lambda p: p.name)
def test_every_fixture_parses_without_loss(path: Path) -> None:
    _assert_without_loss(path.read_bytes())


def test_shared_samples_cover_nested_messages_and_broken_ones() -> None:
    """What the shared corpus exercises, as parsed: forwarded messages, defects."""
    if not SHARED_FILES:
        pytest.skip(f"{SHARED} is absent (the shared MIME samples)")
    parsed = {p.name: parse_message(p.read_bytes()) for p in SHARED_FILES}
    forwarded = [
        n for n, m in parsed.items() if any(a.filename.endswith(".eml") for a in m.attachments)
    ]
    assert forwarded, "no nested message/rfc822 in the corpus"
    broken = [n for n, m in parsed.items() if m.defects]
    assert {"msg_15.txt", "msg_25.txt"} <= set(broken)
    # A digest: its messages are attachments that are messages themselves.
    digest = parsed["msg_02.txt"]
    inner = [
        email.message_from_bytes(a.data, policy=policy.default)
        for a in digest.attachments
        if a.content_type == "message/rfc822"
    ]
    assert [m["subject"] and str(m["subject"]) for m in inner] == [
        "[Ppp] testing #1",
        None,
        "[Ppp] testing #3",
        "[Ppp] testing #4",
        "[Ppp] testing #5",
    ]


# --- our fixtures, value by value ------------------------------------------------------------


def test_multipart_alternative_gives_the_text_and_the_html() -> None:
    mail = fixture("alternative.eml")
    assert (mail.from_name, mail.from_addr) == ("Ana Lima", "ana@example.com")
    assert mail.to == ["bea@example.com", "carl@example.org"]
    assert mail.cc == ["dora@example.net"]
    assert mail.subject == "Lunch on Friday?"
    assert mail.date == "2024-01-12T09:15:00.000000Z"  # +0100 in UTC
    assert mail.message_id == "<alt-1@example.com>"
    assert mail.text == "Shall we try the café on the corner?\n— Ana\n"
    assert mail.html is not None and "<b>café</b>" in mail.html and "<script>" in mail.html
    assert mail.attachments == []
    assert mail.defects == []


def test_mixed_with_attachments_keeps_the_bytes_and_the_inline_image() -> None:
    mail = fixture("mixed_attachment.eml")
    assert mail.in_reply_to == "<request-9@example.com>"
    assert mail.references == ["<root-1@example.com>", "<request-9@example.com>"]
    assert mail.html == '<p>The report is attached. <img src="cid:logo@example.com"></p>\n'
    assert mail.text == "The report is attached."  # made from the HTML: no text part
    logo, pdf = mail.attachments
    assert (logo.content_type, logo.content_id, logo.inline) == (
        "image/png",
        "<logo@example.com>",
        True,
    )
    assert logo.data == b"\x89PNG\r\n\x1a\n" + bytes(100)
    assert (pdf.filename, pdf.content_type, pdf.inline) == ("q1.pdf", "application/pdf", False)
    assert pdf.data == bytes(range(256)) * 8


def test_encoded_words_are_decoded_in_every_header_and_charset() -> None:
    mail = fixture("encoded_words.eml")
    assert mail.from_name == "João Conceição"
    assert mail.subject == "Café ☕ and crème brûlée — 😀"
    assert mail.to == ["renee@example.com"]
    assert mail.text == "Olá, Renée!\n"  # quoted-printable ISO-8859-1
    assert mail.date == "2024-01-16T15:00:00.000000Z"


def test_rfc_2231_file_names_with_charsets_and_continuations() -> None:
    mail = fixture("rfc2231.eml")
    assert mail.text == "Two files."
    assert [(a.filename, a.data) for a in mail.attachments] == [
        ("relatório anual — 2024.txt", b"Annual report"),
        ("日本語のファイル.bin", b"\x00\x01\x02\x03\x04"),
    ]


def test_broken_mime_is_read_as_far_as_it_goes() -> None:
    mail = fixture("broken.eml")
    assert mail.from_addr == "broken@example.com"
    assert mail.to == ["ok@example.com"]  # the garbage address is dropped
    assert mail.subject == "Broken \ufffd\ufffd 8-bit subject"  # undeclared 8-bit bytes
    assert mail.date is None
    assert mail.text == "Unknown charset text"  # read as UTF-8
    assert mail.html == "<p>unterminated <b>html"
    (bad,) = mail.attachments
    assert (bad.filename, bad.data) == ("bad.bin", b"QUJD!!!not*base64")  # kept as it came
    assert "CloseBoundaryNotFoundDefect" in mail.defects


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        b"Subject: =?utf-8?b?!!!?=\n\n",
        b'From: "unterminated\n\n',
        b"Content-Type: multipart/mixed\n\n--x\n",
        b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: message/rfc822\n\n",
        b'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: base64\n\n%%%',
        b"Message-ID: no brackets here\nReferences: <a@b> junk <c@d>\nDate: 99 Foo 99999\n\nx",
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    mail = parse_message(raw)
    assert isinstance(mail.text, str)
    assert all(isinstance(a, ParsedPart) for a in mail.attachments)


# --- building ----------------------------------------------------------------------------------


def test_multipart_nested_past_the_recursion_limit_is_kept_whole() -> None:
    """A hostile sender's 3,000 nested multiparts: the parser would recurse past the
    interpreter's limit; the mail is still received, whole, as one attachment."""
    depth = 3000
    nest = "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth)
    )
    raw = (
        "From: x@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
        f"{nest}--b{depth}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    ).encode()
    parsed = parse_message(raw)
    assert parsed.subject == "deep" and parsed.from_addr == "x@example.org"
    assert [(a.filename, a.data) for a in parsed.attachments] == [("message.eml", raw)]
    assert "nested too deeply" in parsed.defects[-1]


def test_a_built_message_parses_back_to_what_was_sent() -> None:
    subject = "Relatório — café ☕ " * 6  # long: folded, spaces between encoded words kept
    raw = build_message(
        from_addr="ana@example.com",
        to=["bea@example.com", "carl@example.org"],
        cc=["dora@example.net"],
        subject=subject.strip(),
        text="Olá!\nSee the file.",
        html="<p>Olá! See the <b>file</b>.</p>",
        message_id="<built-1@example.com>",
        date=datetime(2024, 1, 15, 9, 30, tzinfo=UTC),
        in_reply_to="<prev@example.com>",
        references=["<root@example.com>", "<prev@example.com>"],
        attachments=[ParsedPart("relatório.pdf", "application/pdf", bytes(range(256)))],
    )
    assert raw.isascii()  # 7-bit: quoted-printable and base64 for the rest
    assert b"\r\n" in raw and b"Bcc" not in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    mail = _assert_without_loss(raw)
    assert mail.subject == subject.strip()
    assert (mail.from_addr, mail.to, mail.cc) == (
        "ana@example.com",
        ["bea@example.com", "carl@example.org"],
        ["dora@example.net"],
    )
    assert mail.text == "Olá!\nSee the file.\n"
    assert mail.html == "<p>Olá! See the <b>file</b>.</p>\n"
    assert mail.message_id == "<built-1@example.com>"
    assert mail.in_reply_to == "<prev@example.com>"
    assert mail.references == ["<root@example.com>", "<prev@example.com>"]
    assert mail.date == "2024-01-15T09:30:00.000000Z"
    (attached,) = mail.attachments
    assert (attached.filename, attached.data) == ("relatório.pdf", bytes(range(256)))


def test_building_refuses_a_line_break_in_a_header() -> None:
    for subject in ("a\r\nBcc: x@example.com", "a\nb"):
        with pytest.raises(ValueError):
            build_message(
                from_addr="ana@example.com",
                to=["bea@example.com"],
                subject=subject,
                text="x",
                message_id="<x@example.com>",
                date=datetime.now(UTC),
            )


def test_html_as_text_drops_tags_scripts_and_styles() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><p>One &amp; two</p>"
        "<script>alert(1)</script><ul><li>a</li><li>b</li></ul></body></html>"
    )
    assert html_to_text(html) == "One & two\n\na\n\nb"
