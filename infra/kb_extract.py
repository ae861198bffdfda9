"""Text out of knowledge-base files: txt, md, html, pdf, docx, csv, json.

`extract(data, name, content_type)` reads a file into a `domain.kb_chunks.Document`: its
title and its headings and body text in reading order, for `domain.kb_chunks.chunk` to cut.
The format comes from the file's extension, else from its content type. Whatever goes wrong
(an unsupported format, a corrupt or encrypted PDF, a broken docx, invalid JSON, binary data
in a text file, no text at all, more text than the limit) raises `UnreadableDocument` with a
message for the user; no other exception leaves this module: the libraries' errors (pypdf
alone has many kinds, and deep nesting raises RecursionError) are turned into one.

Body text is tidied here: prose blocks come out on one line (whitespace collapsed), code and
other preformatted text keeps its lines; control characters and lone surrogates, which no
store can hold, are replaced.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import posixpath
import re
import textwrap
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from domain.kb_chunks import Block, Document, UnreadableDocument
from domain.text import clean

MAX_TEXT = 20_000_000  # characters of text one document may hold
DOCX_MAX_UNCOMPRESSED = 200 * 1024 * 1024
DOCX_MAX_RATIO = 100  # uncompressed size / file size above which a docx is a zip bomb
MAX_TITLE = 300  # characters
FORMATS = ("txt", "md", "html", "pdf", "docx", "csv", "json")
READABLE = "txt, md, html, pdf, docx, csv and json"

_EXTENSIONS = {
    "txt": "txt",
    "text": "txt",
    "md": "md",
    "markdown": "md",
    "mdown": "md",
    "mkd": "md",
    "html": "html",
    "htm": "html",
    "xhtml": "html",
    "pdf": "pdf",
    "docx": "docx",
    "csv": "csv",
    "json": "json",
}
_CONTENT_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "text/json": "json",
}
_LABELS = {
    "txt": "text file",
    "md": "Markdown file",
    "html": "HTML page",
    "pdf": "PDF",
    "docx": "Word document",
    "csv": "CSV file",
    "json": "JSON file",
}


def file_format(name: str, content_type: str = "") -> str | None:
    """One of FORMATS, from the file name's extension, else from the content type; None when
    neither names a format this module reads."""
    base = posixpath.basename(name.replace("\\", "/"))
    _, dot, extension = base.rpartition(".")
    if dot and extension.lower() in _EXTENSIONS:
        return _EXTENSIONS[extension.lower()]
    media = content_type.split(";", 1)[0].strip().lower()
    if media.endswith("+json"):
        return "json"
    return _CONTENT_TYPES.get(media)


def extract(data: bytes, name: str, content_type: str = "") -> Document:
    """The document in `data` (a file called `name`); raises UnreadableDocument, only."""
    kind = file_format(name, content_type)
    if kind is None:
        base = posixpath.basename(name.replace("\\", "/"))
        _, dot, extension = base.rpartition(".")
        what = f".{extension.lower()} files" if dot and extension else "files with no extension"
        if content_type and not (dot and extension):
            what = f"{content_type.split(';', 1)[0].strip()} files"
        raise UnreadableDocument(
            f"unsupported format: {what} are not read (the knowledge base reads {READABLE})"
        )
    if not data.strip():
        raise UnreadableDocument("the file is empty")
    try:
        document = _READERS[kind](data, _file_name(name))
    except UnreadableDocument:
        raise
    except RecursionError as e:
        raise UnreadableDocument(f"this {_LABELS[kind]} is nested too deeply to be read") from e
    except MemoryError as e:
        raise UnreadableDocument(f"this {_LABELS[kind]} is too large to be read") from e
    except Exception as e:  # noqa: BLE001 - any library's failure is this file's problem, reported
        label = _LABELS[kind]
        raise UnreadableDocument(
            f"this {label} is damaged or not really a {label}: {_reason(e)}"
        ) from e
    if not any(block.level == 0 for block in document.blocks):
        hint = " (a scanned PDF without a text layer?)" if kind == "pdf" else ""
        raise UnreadableDocument(f"no text found{hint}")
    return document


def _file_name(name: str) -> str:
    return posixpath.basename(name.replace("\\", "/")) or name


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --- blocks ----------------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ufffe\uffff]")


def _tidy(text: str) -> str:
    """No character a store refuses or a reader cannot see: controls become spaces."""
    return clean(_CONTROL.sub(" ", text))


def _prose(text: str) -> str:
    return " ".join(_tidy(text).split())


def _code(text: str) -> str:
    lines = [line.rstrip() for line in _tidy(text).replace("\r\n", "\n").split("\n")]
    return textwrap.dedent("\n".join(lines).expandtabs(4)).strip("\n")


class _Blocks:
    """A document's blocks as a reader finds them, within the size limit."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.size = 0

    def _add(self, text: str, level: int, page: int | None) -> None:
        if not text:
            return
        self.size += len(text)
        if self.size > MAX_TEXT:
            raise UnreadableDocument(
                f"the document holds more than {MAX_TEXT:,} characters of text (the limit)"
            )
        self.blocks.append(Block(text, level, page))

    def text(self, text: str, page: int | None = None) -> None:
        """A paragraph (its whitespace collapsed)."""
        self._add(_prose(text), 0, page)

    def code(self, text: str, page: int | None = None) -> None:
        """Preformatted text: its lines kept."""
        self._add(_code(text), 0, page)

    def heading(self, text: str, level: int, page: int | None = None) -> None:
        self._add(_prose(text).strip("\u00b6 "), max(1, min(level, 6)), page)

    def first_heading(self, level: int | None = None) -> str:
        for block in self.blocks:
            if block.level > 0 and (level is None or block.level == level):
                return block.text
        return ""

    def document(self, name: str, *titles: str | None) -> Document:
        """The document, titled by the first of `titles` that has text, else its first h1,
        else its first heading, else the file's name."""
        candidates = [*titles, self.first_heading(1), self.first_heading(), name]
        title = next((t for t in (_prose(c or "") for c in candidates) if t), name)[:MAX_TITLE]
        return Document(title=title, blocks=tuple(self.blocks))


# --- text ------------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """Text in UTF-8 (with or without a BOM), UTF-16 or UTF-32 (with a BOM, or UTF-16 told by
    its zero bytes), else Windows-1252 (Latin-1 for the bytes it leaves undefined). Binary
    data (control characters where text has none) is refused."""
    text = _decoded(data)
    controls = sum(1 for c in text if c in _BINARY)
    if controls > 2 + len(text) // 100:  # a stray control character is tolerated
        raise UnreadableDocument("undecodable text: this is not text (is it a binary file?)")
    return _limited(text)


_BINARY = frozenset(chr(c) for c in [*range(0, 9), 11, *range(14, 27), *range(28, 32)]) | {
    chr(c) for c in range(0x7F, 0xA0)
}


def _decoded(data: bytes) -> str:
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as e:
                raise UnreadableDocument(f"undecodable text: not valid {encoding.upper()}") from e
    sample = data[:4096]
    if len(sample) >= 8 and sample.count(0) * 3 > len(sample):  # UTF-16 without a BOM?
        odd_zeros = sample[1::2].count(0) > sample[0::2].count(0)
        try:
            return data.decode("utf-16-le" if odd_zeros else "utf-16-be")
        except UnicodeDecodeError:
            pass  # binary: refused by the caller
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _limited(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise UnreadableDocument(
            f"the document holds more than {MAX_TEXT:,} characters of text (the limit)"
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")


_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*\n")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022\u25e6\u2023\u2013]|\d{1,9}[.)])\s+")


def _read_txt(data: bytes, name: str) -> Document:
    out = _Blocks()
    for paragraph in _PARAGRAPH_BREAK.split(decode(data)):
        _lines_as_blocks(out, [line for line in paragraph.split("\n") if line.strip()])
    return out.document(name)


def _lines_as_blocks(out: _Blocks, lines: list[str], page: int | None = None) -> None:
    """One paragraph of plain text: list items one block each; indented lines (a listing, a
    table laid out with spaces) kept as they are; other lines joined as prose."""
    if not lines:
        return
    if len(lines) > 1 and sum(1 for line in lines if line[:1] in (" ", "\t")) * 2 >= len(lines):
        out.code("\n".join(lines), page)
        return
    item: list[str] = []
    for line in lines:
        if _BULLET.match(line) and item:
            out.text(" ".join(item), page)
            item = []
        item.append(line)
    out.text(" ".join(item), page)


# --- markdown --------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)")
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_TABLE_RULE = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+")
_INLINE = [
    # (negated classes that stop at the next opener: no pattern rescans a long line)
    (re.compile(r"!\[([^\[\]]*)\]\([^()]*\)"), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\[\]]+)\]\([^()]*\)"), r"\1"),  # links: their text
    (re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]"), r"\1"),
    (re.compile(r"<(https?://[^>\s]+)>"), r"\1"),
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),  # inline HTML tags
    (re.compile(r"(`+)([^`]+)\1"), r"\2"),
    (re.compile(r"\*\*(?=\S)([^*]+?)(?<=\S)\*\*"), r"\1"),
    (re.compile(r"(?<!\w)__(?=\S)([^_]+?)(?<=\S)__(?!\w)"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=[^\s*])([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?=[^\s_])([^_]+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"~~(?=\S)([^~]+?)(?<=\S)~~"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<])"), r"\1"),
]


def _inline(text: str) -> str:
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def _front_matter(lines: list[str]) -> tuple[str | None, int]:
    """A YAML front matter's title, and the line the document starts after it."""
    if not lines or lines[0].strip() != "---":
        return None, 0
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            title = None
            for line in lines[1:end]:
                m = re.match(r"^title:\s*(.+?)\s*$", line)
                if m:
                    title = m.group(1).strip("\"'")
            return title, end + 1
    return None, 0


def _read_md(data: bytes, name: str) -> Document:
    lines = decode(data).split("\n")
    title, start = _front_matter(lines)
    out = _Blocks()
    paragraph: list[str] = []
    table = False  # inside a table: each line a row

    def flush() -> None:
        nonlocal table
        if paragraph:
            out.text(_inline(" ".join(paragraph)))
            paragraph.clear()
        table = False

    i = start
    while i < len(lines):
        line = lines[i]
        i += 1
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(2)
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            indent = len(fence.group(1))
            code: list[str] = []
            while i < len(lines) and not closing.match(lines[i]):
                code.append(re.sub(rf"^ {{0,{indent}}}", "", lines[i]))
                i += 1
            i += 1  # the closing fence (or the end of the file)
            out.code("\n".join(code))
            continue
        if not line.strip():
            flush()
            continue
        if (line.startswith("    ") or line.startswith("\t")) and not paragraph:
            code = [line]
            while i < len(lines) and (
                not lines[i].strip() or lines[i].startswith("    ") or lines[i].startswith("\t")
            ):
                code.append(lines[i])
                i += 1
            out.code("\n".join(code))
            continue
        heading = _ATX.match(line)
        if heading:
            flush()
            text = line[heading.end() :].strip()
            closed = text.rstrip("#")  # an optional closing sequence: "## Title ##"
            if not closed or closed[-1] in " \t":
                text = closed.strip()
            out.heading(_inline(text), len(heading.group(1)))
            continue
        if paragraph and not table and _SETEXT.match(line) and not _ITEM.match(paragraph[0]):
            out.heading(_inline(" ".join(paragraph)), 1 if line.strip()[0] == "=" else 2)
            paragraph.clear()
            continue
        if _RULE.match(line):
            flush()
            continue
        if _LINK_DEFINITION.match(line):
            continue
        if _TABLE_RULE.match(line) and "|" in line:
            if len(paragraph) == 1 and "|" in paragraph[0]:  # a table's header row
                header = paragraph.pop()
                flush()
                out.text(_row(header))
                table = True
            continue
        if table and "|" in line:
            out.text(_row(line))
            continue
        quote = _QUOTE.match(line)
        if quote:
            while quote:
                line = line[quote.end() :]
                quote = _QUOTE.match(line)
            if not line.strip():
                flush()
                continue
        if _ITEM.match(line):
            flush()
            line = _ITEM.sub("", line, count=1)
        paragraph.append(line.strip())
    flush()
    return out.document(name, title)


def _row(line: str) -> str:
    cells = [cell.strip() for cell in _inline(line).strip().strip("|").split("|")]
    return " | ".join(cell for cell in cells if cell)


# --- html ------------------------------------------------------------------------------------

_DROPPED = (
    "//script|//style|//noscript|//template|//nav|//footer|//svg|//iframe|//object|//embed"
    "|//canvas|//button|//select|//textarea|//header[not(ancestor::main or ancestor::article)]"
    "|//*[@role='navigation' or @role='search' or @hidden or @aria-hidden='true']"
    "|//*[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"
    "[string-length(normalize-space()) < 4]"  # a permalink's ¶, not a swallowed page
)
_MAIN = (  # the page's main content, if it says which it is (not nested in another)
    "//*[self::main or @role='main'][not(ancestor::main or ancestor::*[@role='main'])]"
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "form",
        "hgroup",
        "hr",
        "li",
        "main",
        "menu",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "ul",
    ]
)
_CELLS = frozenset(("td", "th"))
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _html_utf8(data: bytes) -> bytes:
    """The page in UTF-8, without control characters (which lxml refuses in text): as it
    is when it is valid UTF-8 with no BOM, else decoded by the BOM, by the charset its <meta>
    declares, or as other text is (binary data is refused)."""
    text: str | None = None
    if not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            data.decode("utf-8")
            if b"\x00" not in data[:4096]:
                return data.translate(_NO_CONTROLS)
        except UnicodeDecodeError:
            declared = _META_CHARSET.search(data[:4096])
            if declared:
                try:
                    text = data.decode(declared.group(1).decode("ascii"), errors="replace")
                except LookupError:
                    text = None
    if text is None:
        text = decode(data)
    return text.encode("utf-8", errors="replace").translate(_NO_CONTROLS)


_NO_CONTROLS = bytes.maketrans(
    bytes([*range(0, 9), 11, *range(14, 32), 127]), b" " * (9 + 1 + 18 + 1)
)


def _read_html(data: bytes, name: str) -> Document:
    from lxml import etree
    from lxml import html as lxml_html

    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    root = lxml_html.document_fromstring(_html_utf8(data), parser=parser)
    for error in parser.error_log:  # recovered errors are fine; a fatal one lost the rest
        if error.level_name == "FATAL":
            if "depth" in error.message:
                raise UnreadableDocument("this HTML page is nested too deeply to be read")
            raise UnreadableDocument(f"this HTML page cannot be parsed: {_reason(error.message)}")
    title_element = root.find("head/title")
    title = title_element.text_content() if title_element is not None else None
    for element in root.xpath(_DROPPED):
        if element.getparent() is not None:
            element.drop_tree()
    main = root.xpath(_MAIN)
    if not main:
        articles = root.xpath("//article")
        main = articles if len(articles) == 1 else [root.find("body")]
    out = _Blocks()
    for content in main:
        if content is not None:
            _walk_html(etree, content, out)
    return out.document(name, title)


def _walk_html(etree: Any, content: Any, out: _Blocks) -> None:
    """The blocks of an element, in order: an iterative walk (no recursion, however deep
    the page), text between block elements gathered into paragraphs."""
    inline: list[str] = []

    def flush() -> None:
        if inline:
            out.text("".join(inline))
            inline.clear()

    walker = etree.iterwalk(content, events=("start", "end"))
    for event, element in walker:
        tag = element.tag if isinstance(element.tag, str) else ""
        if event == "start":
            if tag in _HEADINGS:
                flush()
                out.heading(element.text_content(), _HEADINGS[tag])
                walker.skip_subtree()
            elif tag == "pre":
                flush()
                out.code(element.text_content())
                walker.skip_subtree()
            elif tag == "tr":
                flush()
                cells = [
                    " ".join(cell.text_content().split())
                    for cell in element
                    if isinstance(cell.tag, str) and cell.tag in _CELLS
                ]
                out.text(" | ".join(cell for cell in cells if cell))
                walker.skip_subtree()
            elif tag in _BLOCK_TAGS:
                flush()
                if element.text:
                    inline.append(element.text)
            elif tag == "br":
                inline.append(" ")
            elif tag and element.text:
                inline.append(element.text)
        else:
            if tag in _BLOCK_TAGS:
                flush()
            if element.tail and element is not content:
                inline.append(element.tail)
    flush()


# --- pdf -------------------------------------------------------------------------------------

_PAGE_NUMBER = re.compile(
    r"^\s*(?:page\s+)?[-\u2013]?\s*\d{1,5}\s*(?:(?:/|of)\s*\d{1,5})?\s*[-\u2013]?\s*$", re.I
)
_DIGITS = re.compile(r"\d+")
_DOT_LEADER = re.compile(r"(?:[ \t]*\.){4,}")  # a table of contents' ". . . . 12"
MAX_BAD_PAGES = (1, 10)  # the share of unparsable pages a PDF is still read with
RUNNING_LINE = 100  # running headers and footers are no longer than this
_SENTENCE_END = re.compile(r"[.!?:;\u3002\"'\u201d)]\s*$")
_NUMBERING = re.compile(
    r"^(?:(?:chapter|section|part|appendix)\s+)?[\dA-Z]{1,4}(?:\.[\dA-Z]{1,4})*[.:)]?$", re.I
)


def _read_pdf(data: bytes, name: str) -> Document:
    import pypdf
    from pypdf import PasswordType

    if b"%PDF-" not in data[:1024]:
        raise UnreadableDocument("this is not a PDF (no %PDF header)")
    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as e:  # noqa: BLE001 - an encryption pypdf cannot undo
            raise UnreadableDocument(
                f"the PDF is encrypted and cannot be opened: {_reason(e)}"
            ) from e
        if opened == PasswordType.NOT_DECRYPTED:
            raise UnreadableDocument("the PDF is encrypted (password protected): it cannot be read")
    pages = _pages_text(reader)
    if not any(pages):
        raise UnreadableDocument("no text found (a scanned PDF without a text layer?)")
    running = _running_lines(pages)
    outline = _outline(reader)
    out = _Blocks()
    for number, lines in enumerate(pages, start=1):
        headings = outline.get(number, [])
        kept = _without_running_lines(lines, running)
        placed: list[tuple[int, int, str]] = []  # (line index or -1, level, title)
        cursor = 0  # headings are found in order, each below the one before
        for level, title in headings:
            index = _find_heading(kept, title, after=cursor)
            placed.append((-1 if index is None else index, level, title))
            cursor = cursor if index is None else index + 1
        start = 0
        for index, level, title in placed:
            if index >= 0:  # the heading's line: the text above it ends the section before
                _pdf_paragraphs(out, kept[start:index], number)
                start = index + 1
            out.heading(title, level, number)  # else: the section starts where it may
        _pdf_paragraphs(out, kept[start:], number)
    metadata_title = None
    try:
        metadata = reader.metadata
        metadata_title = metadata.title if metadata is not None else None
    except Exception:  # noqa: BLE001 - a damaged info dictionary only costs the title
        metadata_title = None
    return out.document(name, str(metadata_title) if metadata_title else None)


def _pages_text(reader: Any) -> list[list[str]]:
    """Each page's lines. A page whose content pypdf cannot parse is left empty when few are
    (a glitch should not cost the rest of a long document); when many are, the PDF is
    reported damaged."""
    pages: list[list[str]] = []
    failed: list[tuple[int, Exception]] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            pages.append(_page_lines(page))
        except UnreadableDocument:
            raise
        except (RecursionError, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - pypdf's many errors: counted below
            pages.append([])
            failed.append((number, e))
    if failed and len(failed) * MAX_BAD_PAGES[1] > len(pages) * MAX_BAD_PAGES[0]:
        number, error = failed[0]
        raise UnreadableDocument(
            f"this PDF is damaged: {len(failed)} of its {len(pages)} pages cannot be read"
            f" (page {number}: {_reason(error)})"
        )
    return pages


def _page_lines(page: Any) -> list[str]:
    text = _DOT_LEADER.sub(" ", _tidy(page.extract_text() or ""))
    return [" ".join(line.split()) for line in text.split("\n")]


def _shape(line: str) -> str:
    """A line with its numbers blanked: running headers and footers differ only in those."""
    return _DIGITS.sub("#", line.strip().lower())


def _edges(lines: list[str]) -> list[int]:
    """The indexes of a page's first two and last two lines with text, if it has others
    (a page of a line or two is all body)."""
    filled = [index for index, line in enumerate(lines) if line]
    if len(filled) < 3:
        return []
    return sorted(set(filled[:2] + filled[-2:]))


def _running_lines(pages: list[list[str]]) -> set[str]:
    """The shapes of short lines that head or foot many pages (running titles, "page x")."""
    if len(pages) < 4:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_shape(lines[i]) for i in _edges(lines) if len(lines[i]) <= RUNNING_LINE})
    threshold = max(3, len(pages) // 20)  # a chapter's running title heads its pages only
    return {shape for shape, count in counts.items() if count >= threshold and shape}


def _without_running_lines(lines: list[str], running: set[str]) -> list[str]:
    """A page's lines less the page number and running header or footer at its edges."""
    dropped = {
        i for i in _edges(lines) if _PAGE_NUMBER.match(lines[i]) or _shape(lines[i]) in running
    }
    return [line for index, line in enumerate(lines) if index not in dropped]


def _outline(reader: Any) -> dict[int, list[tuple[int, str]]]:
    """The bookmarks as headings: page number (1-based) to (level, title), in order. A broken
    outline is no reason to lose the document: it is then ignored."""
    found: dict[int, list[tuple[int, str]]] = {}
    try:
        for entry, level in _ordered_outline(reader.outline):
            page = reader.get_destination_page_number(entry)
            title = _prose(str(entry.title or ""))
            if page is not None and page >= 0 and title:
                found.setdefault(page + 1, []).append((min(level, 6), title))
    except Exception:  # noqa: BLE001 - the outline is optional
        return {}
    return found


def _ordered_outline(outline: Any) -> list[tuple[Any, int]]:
    """The outline's entries in document order with their depth (1 for the top)."""
    ordered: list[tuple[Any, int]] = []
    stack: list[tuple[Iterator[Any], int]] = [(iter(outline), 1)]
    while stack:
        entries, level = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
        elif isinstance(entry, list):
            stack.append((iter(entry), level + 1))
        else:
            ordered.append((entry, level))
    return ordered


def _find_heading(lines: list[str], title: str, after: int) -> int | None:
    wanted = title.lower()
    for index in range(after, len(lines)):
        line = lines[index].lower()
        if line == wanted:
            return index
        if line.endswith(wanted) and _NUMBERING.match(line[: -len(wanted)].strip()):
            return index
    return None


def _pdf_paragraphs(out: _Blocks, lines: list[str], page: int) -> None:
    """A page's lines as paragraphs: a blank line, a bullet, or a short line that ends a
    sentence closes one; words hyphenated at a line's end are joined again."""
    width = max((len(line) for line in lines), default=0)
    paragraph = ""
    for line in lines:
        if not line:
            if paragraph:
                out.text(paragraph, page)
            paragraph = ""
            continue
        if paragraph and _BULLET.match(line):
            out.text(paragraph, page)
            paragraph = ""
        if (
            paragraph.endswith("-")
            and len(paragraph) > 1
            and paragraph[-2].isalpha()
            and line[:1].islower()
        ):
            paragraph = paragraph[:-1] + line
        else:
            paragraph = f"{paragraph} {line}" if paragraph else line
        if _SENTENCE_END.search(line) and len(line) < 0.75 * width:
            out.text(paragraph, page)
            paragraph = ""
    if paragraph:
        out.text(paragraph, page)


# --- docx ------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)


def _read_docx(data: bytes, name: str) -> Document:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise UnreadableDocument("this Word document is damaged: it is not a zip archive") from e
    with archive:
        total = sum(info.file_size for info in archive.infolist())
    if total > DOCX_MAX_UNCOMPRESSED or total > DOCX_MAX_RATIO * len(data):
        raise UnreadableDocument(
            f"this Word document would unpack to {total:,} bytes from {len(data):,}:"
            " refused as a zip bomb"
        )
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    out = _Blocks()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell is listed once per grid column
                        continue
                    seen.add(id(cell._tc))
                    cells.append(_prose(cell.text))
                out.text(" | ".join(cell for cell in cells if cell))
            continue
        style = item.style.name if item.style is not None else ""
        level = _heading_level(style or "")
        if level:
            out.heading(item.text, level)
        else:
            out.text(item.text)
    title = None
    try:
        title = document.core_properties.title
    except Exception:  # noqa: BLE001 - damaged core properties only cost the title
        title = None
    return out.document(name, title)


def _heading_level(style: str) -> int:
    if style.lower() == "title":
        return 1
    m = _HEADING_STYLE.match(style.strip())
    return int(m.group(1)) if m else 0


# --- csv -------------------------------------------------------------------------------------


def _read_csv(data: bytes, name: str) -> Document:
    text = decode(data)
    rows = csv.reader(io.StringIO(text), _dialect(text[:16384]))
    header: list[str] | None = None
    out = _Blocks()
    for row in rows:
        values = [_prose(value) for value in row]
        if not any(values):
            continue
        if header is None:
            header = values
            continue
        fields = []
        for index, value in enumerate(values):
            if not value:
                continue
            column = (
                header[index] if index < len(header) and header[index] else f"column {index + 1}"
            )
            fields.append(f"{column}: {value}")
        out.text("; ".join(fields))
    if header is not None and not out.blocks:  # a header alone is the table's only text
        out.text("; ".join(value for value in header if value))
    return out.document(name)


def _dialect(sample: str) -> Any:
    """The sample's CSV dialect: csv.Sniffer's guess, else Excel's with the delimiter the
    header line holds most of (the Sniffer gives up on rows of unequal length)."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        pass
    header = next((line for line in sample.split("\n") if line.strip()), "")
    delimiter = max(",;\t|", key=header.count)
    if not header.count(delimiter):
        return csv.excel
    return type("Guessed", (csv.excel,), {"delimiter": delimiter})


# --- json ------------------------------------------------------------------------------------


def _read_json(data: bytes, name: str) -> Document:
    text = decode(data)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnreadableDocument(
            f"invalid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from e
    except RecursionError as e:
        raise UnreadableDocument("the JSON is nested too deeply to be read") from e
    out = _Blocks()
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, list) and any(isinstance(v, dict | list) for v in item):
                for index, element in enumerate(item):
                    out.code("\n".join(_flatten(element, f"{key}[{index}]")))
            else:
                out.code("\n".join(_flatten(item, str(key))))
    elif isinstance(value, list):
        for element in value:
            out.code("\n".join(_flatten(element, "")))
    else:
        out.text(_scalar(value))
    return out.document(name)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    return json.dumps(value)


def _flatten(value: Any, prefix: str) -> list[str]:
    """`a.b[0].c: value` lines for every scalar under `value` (iteratively: any depth)."""
    lines: list[str] = []
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            children = [(f"{path}.{key}" if path else str(key), v) for key, v in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(item)]))
        elif item is not None and item != "":
            rendered = _scalar(item)
            lines.append(f"{path}: {rendered}" if path else rendered)
    return lines


_READERS: dict[str, Callable[[bytes, str], Document]] = {
    "txt": _read_txt,
    "md": _read_md,
    "html": _read_html,
    "pdf": _read_pdf,
    "docx": _read_docx,
    "csv": _read_csv,
    "json": _read_json,
}
