"""The drive's path rules (commands.drive): what is normalised, what is refused and why, how an
uploaded file's name is reduced to a plain name, and the download's HTTP helpers."""

from __future__ import annotations

import unicodedata

import pytest

from api.drive import _range, content_disposition
from commands.drive import (
    DrivePath,
    PathError,
    ancestors,
    check_write,
    content_type_of,
    download_url,
    normalise_path,
    resolve,
    sanitise_filename,
)
from domain.common import Actor, Forbidden
from domain.drive import BOTS_SPACE, file_id, user_space

ANA = Actor("ana@example.com")
ADMIN = Actor("root@example.com", is_admin=True)


@pytest.mark.parametrize(
    ("raw", "path", "folder"),
    [
        ("a.txt", "a.txt", False),
        ("reports/q1.pdf", "reports/q1.pdf", False),
        ("reports/", "reports", True),
        ("a b/c d.txt", "a b/c d.txt", False),
        ("%2e%2e", "%2e%2e", False),  # a double-encoded `..` is decoded once: a literal name
        ("...", "...", False),
        (".hidden/.x", ".hidden/.x", False),
        ("sales.gbai/sales.gbdialog/start.bas", "sales.gbai/sales.gbdialog/start.bas", False),
        ("日本語/ファイル.txt", "日本語/ファイル.txt", False),
        ("a" * 255, "a" * 255, False),
        ("/".join(["a" * 200] * 5), "/".join(["a" * 200] * 5), False),  # 1004 bytes
    ],
)
def test_paths_that_are_kept(raw: str, path: str, folder: bool) -> None:
    assert normalise_path(raw) == DrivePath(path, folder)


def test_paths_are_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "café/résumé.txt")
    assert decomposed != "café/résumé.txt"
    assert normalise_path(decomposed).path == "café/résumé.txt"
    # One file, whichever way the client composed its name.
    assert file_id(user_space("a@x"), normalise_path(decomposed).path) == file_id(
        user_space("a@x"), "café/résumé.txt"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("/", "absolute"),
        ("..", "`..` segments"),
        ("../x", "`..` segments"),
        ("a/../../x", "`..` segments"),
        ("a/..", "`..` segments"),
        ("./a", "`.` segments"),
        ("a/./b", "`.` segments"),
        ("a//b", "empty segment"),
        ("a/b//", "empty segment"),
        ("a\\b", "backslash"),
        ("..\\..\\x", "backslash"),
        ("a\x00b", "NUL"),
        ("a\nb", "control character (U+000A)"),
        ("a\tb", "control character (U+0009)"),
        ("a\x7fb", "control character (U+007F)"),
        ("a\x85b", "control character (U+0085)"),
        ("a\x9bb", "control character (U+009B)"),
        ("a\u2215b", "U+2215"),  # DIVISION SLASH
        ("a\u2044b", "U+2044"),  # FRACTION SLASH
        ("a\uff0fb", "U+FF0F"),  # FULLWIDTH SOLIDUS
        ("a\uff3cb", "U+FF3C"),  # FULLWIDTH REVERSE SOLIDUS
        ("\u2024\u2024/x", "U+2024"),  # ONE DOT LEADER
        ("\u2025/x", "U+2025"),  # TWO DOT LEADER
        ("\ufe52\ufe52", "U+FE52"),  # SMALL FULL STOP
        ("\uff0e\uff0e/x", "U+FF0E"),  # FULLWIDTH FULL STOP
        ("a" * 256, "255 bytes"),
        ("é" * 128, "255 bytes"),  # 256 bytes in UTF-8
        ("/".join(["a" * 200] * 6), "1024 bytes"),
        ("a\ud800b", "surrogate"),
    ],
)
def test_paths_that_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(PathError) as refused:
        normalise_path(raw)
    assert reason in str(refused.value), str(refused.value)
    assert refused.value.field == "path"


def test_the_top_folder_only_where_allowed() -> None:
    assert normalise_path("", allow_root=True) == DrivePath("", True)
    assert normalise_path("/", allow_root=True) == DrivePath("", True)
    with pytest.raises(PathError):
        normalise_path("")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("C:\\Users\\ana\\notes.txt", "notes.txt"),
        ("/abs/olute.txt", "olute.txt"),
        ("  spaced out.txt  ", "spaced out.txt"),
        ("tab\tand\nnewline.txt", "tabandnewline.txt"),
        ("nul\x00.txt", "nul.txt"),
        ("ev\u2215il.txt", "evil.txt"),
        (unicodedata.normalize("NFD", "café.txt"), "café.txt"),
        ("...", "..."),
    ],
)
def test_uploaded_names_are_sanitised(raw: str, name: str) -> None:
    assert sanitise_filename(raw) == name


@pytest.mark.parametrize("raw", ["", "   ", ".", "..", "a/..", "dir/", "\x00\x01", "x/\u2024"])
def test_uploaded_names_that_leave_nothing_are_refused(raw: str) -> None:
    with pytest.raises(PathError) as refused:
        sanitise_filename(raw)
    assert refused.value.field == "filename"


def test_an_overlong_uploaded_name_is_refused() -> None:
    with pytest.raises(PathError, match="255 bytes"):
        sanitise_filename("x" * 256)


def test_spaces_and_who_writes_them() -> None:
    assert resolve(ANA, "notes/a.txt") == user_space(ANA.email)
    assert resolve(ANA, "sales.gbai/x") == BOTS_SPACE
    assert resolve(ANA, "Sales.GBAI/x") == BOTS_SPACE
    assert resolve(ANA, "notes/sales.gbai/x") == user_space(ANA.email)  # only the first segment
    assert resolve(ANA, "") == user_space(ANA.email)
    check_write(ANA, user_space(ANA.email), "notes/a.txt")
    check_write(ADMIN, BOTS_SPACE, "sales.gbai/x")
    with pytest.raises(Forbidden, match="only admins write"):
        check_write(ANA, BOTS_SPACE, "sales.gbai/x")
    with pytest.raises(Forbidden):
        check_write(ANA, user_space("bea@example.com"), "x")
    assert file_id(user_space(ANA.email), "a") != file_id(user_space("bea@example.com"), "a")


def test_ancestors_and_links() -> None:
    assert ancestors("a/b/c.txt") == ["a", "a/b"]
    assert ancestors("c.txt") == []
    assert download_url("r é/a#b?.txt") == "/api/drive/r%20%C3%A9/a%23b%3F.txt/download"


def test_content_types() -> None:
    assert content_type_of("a.pdf", None) == "application/pdf"
    assert content_type_of("a.pdf", "application/octet-stream") == "application/pdf"
    assert content_type_of("a.bin", "application/octet-stream") == "application/octet-stream"
    assert content_type_of("a.txt", "text/plain", "UTF-8") == "text/plain; charset=utf-8"
    assert content_type_of("a.txt", "Text/CSV") == "text/csv"
    assert content_type_of("a.txt", "text/plain\r\nX-Evil: 1") == "text/plain"
    assert content_type_of("noext", "not a type") == "application/octet-stream"


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=10-20", 100, (10, 20)),
        ("bytes=95-200", 100, (95, 99)),
        ("bytes=100-", 100, "unsatisfiable"),
        ("bytes=100-200", 100, "unsatisfiable"),
        ("bytes=-0", 100, "unsatisfiable"),
        ("bytes=0-", 0, "unsatisfiable"),
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole content
        ("bytes=5-1", 100, None),
        ("items=0-9", 100, None),
        ("bytes=-", 100, None),
        ("bytes=x-y", 100, None),
    ],
)
def test_range_headers(header: str, size: int, expected: object) -> None:
    assert _range(header, size) == expected


def test_content_disposition_has_an_ascii_fallback_and_the_utf8_name() -> None:
    assert content_disposition("report.pdf") == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )
    assert content_disposition('Relatório "final"; v2.pdf') == (
        'attachment; filename="Relatorio _final__ v2.pdf";'
        " filename*=UTF-8''Relat%C3%B3rio%20%22final%22%3B%20v2.pdf"
    )
    assert content_disposition("日本.txt") == (
        "attachment; filename=\".txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"
    )
