"""Knowledge-base extraction (infra.kb_extract) and structure-aware chunking (domain.kb_chunks):
every format from a fixture made here, headings to heading paths, packing, overlap, long
paragraphs, a 300-page PDF, and every way a file can be unreadable."""

from __future__ import annotations

import io
import json
import random
import time
import zipfile
from typing import Any

import docx
import pytest
from fpdf import FPDF

from domain.kb_chunks import Block, Document, Passage, UnreadableDocument, chunk, sentences
from infra import kb_extract
from infra.kb_extract import extract, file_format

WORDS = [
    "policy",
    "employee",
    "manager",
    "office",
    "leave",
    "request",
    "approval",
    "salary",
    "benefit",
    "holiday",
    "contract",
    "training",
    "safety",
    "meeting",
    "report",
    "budget",
    "travel",
    "expense",
    "laptop",
    "badge",
    "parking",
    "schedule",
]


def prose(rng: random.Random, sentences_: int, words: int = 12) -> str:
    """Deterministic filler: `sentences_` sentences of `words` words, each ending with '.'."""
    out = []
    for _ in range(sentences_):
        chosen = [rng.choice(WORDS) for _ in range(words)]
        out.append(" ".join(chosen).capitalize() + ".")
    return " ".join(out)


def body(document: Document) -> list[Block]:
    return [b for b in document.blocks if b.level == 0]


def headings(document: Document) -> list[tuple[int, str]]:
    return [(b.level, b.text) for b in document.blocks if b.level > 0]


def unreadable(data: bytes, name: str, content_type: str = "") -> str:
    with pytest.raises(UnreadableDocument) as caught:
        extract(data, name, content_type)
    return str(caught.value)


# --- chunking ---------------------------------------------------------------------------------


def test_headings_make_heading_paths_and_close_passages() -> None:
    document = Document(
        "Handbook",
        (
            Block("Before any heading."),
            Block("Leave", 1),
            Block("About leave in general."),
            Block("Vacation", 2),
            Block("You get 25 days."),
            Block("Carry-over", 3),
            Block("Five days carry over."),
            Block("Sick leave", 2),  # replaces "Vacation > Carry-over"
            Block("Call your manager."),
            Block("Empty section", 2),
            Block("Pay", 1),  # replaces everything
            Block("   \n\t "),  # nothing: no passage
            Block("Paid monthly."),
        ),
    )
    passages = chunk(document)
    assert [(p.heading, p.content) for p in passages] == [
        ("", "Before any heading."),
        ("Leave", "About leave in general."),
        ("Leave > Vacation", "You get 25 days."),
        ("Leave > Vacation > Carry-over", "Five days carry over."),
        ("Leave > Sick leave", "Call your manager."),
        ("Pay", "Paid monthly."),
    ]
    assert [p.position for p in passages] == list(range(6))
    assert all(p.page is None for p in passages)


def test_a_skipped_level_and_a_higher_heading_replace_the_right_part_of_the_path() -> None:
    document = Document(
        "t",
        (
            Block("A", 1),
            Block("B", 3),
            Block("under B"),
            Block("C", 2),  # replaces B (level 3 >= 2)
            Block("under C"),
        ),
    )
    assert [(p.heading, p.content) for p in chunk(document)] == [
        ("A > B", "under B"),
        ("A > C", "under C"),
    ]


def test_short_paragraphs_are_packed_up_to_max_chars() -> None:
    rng = random.Random(1)
    paragraphs = [prose(rng, 2, 8) for _ in range(30)]  # about 110 characters each
    passages = chunk(Document("t", tuple(Block(p) for p in paragraphs)), max_chars=400, overlap=0)
    assert all(len(p.content) <= 400 for p in passages)
    assert 1 < len(passages) < len(paragraphs)  # packed, several a passage
    assert "\n".join(p.content for p in passages) == "\n".join(paragraphs)  # no overlap: exact
    for passage in passages:  # a paragraph that fits is never cut
        assert all(line in paragraphs for line in passage.content.split("\n"))


def test_a_long_paragraph_is_split_at_sentences_with_overlap() -> None:
    rng = random.Random(2)
    paragraph = prose(rng, 40)  # about 3,600 characters
    passages = chunk(Document("t", (Block("Rules", 1), Block(paragraph))), 1000, 150)
    assert len(passages) >= 4
    assert all(p.heading == "Rules" and 0 < len(p.content) <= 1000 for p in passages)
    said = set(sentences(paragraph))
    for passage in passages:  # cut at sentence ends: every piece is whole sentences
        assert set(sentences(passage.content)) <= said
    for before, after in zip(passages, passages[1:], strict=False):
        shared = _overlap(before.content, after.content)
        assert 0 < len(shared) <= 150, (before.content[-200:], after.content[:200])
        assert shared in said or all(s in said for s in sentences(shared))
    # nothing is lost: every sentence is in some passage
    assert said == {s for p in passages for s in sentences(p.content)}


def _overlap(before: str, after: str) -> str:
    """The longest start of `after` that ends `before`."""
    for size in range(min(len(before), len(after)), 0, -1):
        if before.endswith(after[:size]):
            return after[:size]
    return ""


def test_sentence_boundaries() -> None:
    assert sentences('He said "Stop." Then he left! Why? e.g. this stays. 3.5 stays too.') == [
        'He said "Stop."',
        "Then he left!",
        "Why? e.g. this stays.",
        "3.5 stays too.",
    ]


def test_a_paragraph_without_sentences_is_split_at_whitespace_then_anywhere() -> None:
    words = " ".join(f"word{i:04d}" for i in range(400))  # 3,999 characters, no full stop
    token = "x" * 2500
    passages = chunk(Document("t", (Block(words), Block("S", 1), Block(token))), 500, 100)
    first = [p for p in passages if p.heading == ""]
    assert all(len(p.content) <= 500 for p in passages)
    for passage in first:  # cut between words, never inside one
        assert all(len(w) == 8 and w.startswith("word") for w in passage.content.split(" "))
    seen = {w for p in first for w in p.content.split(" ")}
    assert seen == set(words.split(" "))
    for before, after in zip(first, first[1:], strict=False):
        assert 0 < len(_overlap(before.content, after.content)) <= 100
    hard = [p.content for p in passages if p.heading == "S"]
    assert all(set(piece) == {"x"} and len(piece) <= 500 for piece in hard)
    assert len(hard) >= 6  # 2,500 characters in pieces of 400 new ones each


def test_overlap_never_crosses_a_heading() -> None:
    rng = random.Random(3)
    first, second = prose(rng, 20), prose(rng, 20)
    passages = chunk(Document("t", (Block("One", 1), Block(first), Block("Two", 1), Block(second))))
    opening = next(p for p in passages if p.heading == "Two")
    assert opening.content.startswith(second[:50])
    assert not set(sentences(opening.content)) & set(sentences(first))
    assert all(first.find(s) < 0 for s in sentences(second))


def test_whitespace_is_normalised_but_code_keeps_its_lines() -> None:
    code = "\n\n    def f(x):\n\t\treturn x   \n\n\n\n    print(f(1))\n"
    passages = chunk(Document("t", (Block("  many   spaces\u00a0and\ttabs  "), Block(code))))
    assert passages[0].content == "many spaces and tabs\ndef f(x):\n    return x\n\nprint(f(1))"


def test_a_long_code_block_is_split_at_line_ends() -> None:
    lines = [f"    value_{i} = compute({i})  # step {i}" for i in range(100)]
    passages = chunk(Document("t", (Block("\n".join(lines)),)), 600, 100)
    assert len(passages) > 5
    kept = {line.strip() for line in lines}
    for passage in passages:
        assert len(passage.content) <= 600
        assert all(line.strip() in kept for line in passage.content.split("\n"))


def test_chunking_is_deterministic_and_never_yields_empty_passages() -> None:
    rng = random.Random(4)
    blocks: list[Block] = []
    for i in range(200):
        kind = rng.random()
        if kind < 0.1:
            blocks.append(Block(f"Heading {i}", rng.randint(1, 4)))
        elif kind < 0.15:
            blocks.append(Block(" \n "))
        else:
            blocks.append(Block(prose(rng, rng.randint(1, 30)), page=i // 10 + 1))
    document = Document("t", tuple(blocks))
    once, again = chunk(document), chunk(document)
    assert once == again
    assert all(p.content.strip() and len(p.content) <= 1000 for p in once)
    assert [p.position for p in once] == list(range(len(once)))
    assert all(p.page is not None for p in once)


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError):
        chunk(Document("t", (Block("x"),)), max_chars=0)


# --- format detection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("a/b/Handbook.PDF", "", "pdf"),
        ("notes.markdown", "text/plain", "md"),
        ("page.htm", "", "html"),
        ("README", "text/plain; charset=utf-8", "txt"),
        ("data", "application/ld+json", "json"),
        ("report.docx", "application/octet-stream", "docx"),
        ("table.xlsx", "", None),
        ("archive", "application/zip", None),
    ],
)
def test_format_from_extension_then_content_type(
    name: str, content_type: str, expected: str | None
) -> None:
    assert file_format(name, content_type) == expected


def test_unsupported_format_says_which_formats_are_read() -> None:
    message = unreadable(b"PK\x03\x04 spreadsheet", "budget.xlsx")
    assert ".xlsx" in message and "txt, md, html, pdf, docx, csv and json" in message
    assert "application/zip" in unreadable(b"abc", "blob", "application/zip")


def test_empty_file() -> None:
    for name in ("a.txt", "a.pdf", "a.docx", "a.json", "a.html"):
        assert unreadable(b"", name) == "the file is empty"
    assert unreadable(b"  \n\n ", "a.md") == "the file is empty"


# --- txt --------------------------------------------------------------------------------------


def test_txt_paragraphs_by_blank_lines() -> None:
    text = (
        "First paragraph\nwraps here.\n\n  \nSecond one.\n\n"
        "- a list item\n- another\n  continued\n\n"
        "    table   col\n    row     1\n"
    )
    document = extract(text.encode(), "docs/notes.txt")
    assert document.title == "notes.txt"
    assert [b.text for b in document.blocks] == [
        "First paragraph wraps here.",
        "Second one.",
        "- a list item",
        "- another continued",
        "table   col\nrow     1",
    ]


def test_txt_encodings() -> None:
    assert body(extract("\ufeffcafé".encode(), "a.txt"))[0].text == "café"
    assert body(extract("naïve — déjà".encode("utf-16"), "a.txt"))[0].text == "naïve — déjà"
    assert body(extract("no BOM at all".encode("utf-16-le"), "a.txt"))[0].text == "no BOM at all"
    legacy = "Café crème – naïve “quoted”".encode("cp1252")  # not UTF-8: Windows-1252
    assert body(extract(legacy, "a.txt"))[0].text == "Café crème – naïve “quoted”"


def test_invalid_utf8_binary_text_is_unreadable() -> None:
    data = random.Random(5).randbytes(4000)
    assert "undecodable text" in unreadable(data, "a.txt")
    assert "undecodable text" in unreadable(b"\x00\x01\x02\xff\xfe binary" * 50, "a.csv")
    assert "undecodable text" in unreadable(data, "a.html")
    assert "undecodable text" in unreadable(b"\x01\x00\x00\x00" * 100, "a.json")


def test_control_characters_do_not_reach_the_index() -> None:
    document = extract(b"bell\x07 and nul\x00 here", "a.txt")
    assert body(document)[0].text == "bell and nul here"


# --- md ---------------------------------------------------------------------------------------

MARKDOWN = b"""---
title: "Employee Handbook"
---

Welcome to **ACME**, see the [intranet](https://intranet.example) and `snake_case` names.

Vacation
========

You get *25 days* of paid vacation
per year.

- item one
- item two
  continues here

## Sick leave ##

> Call your manager
> before 9am.

```python
def days(year):
    return 25
```

| Kind | Days |
|------|-----:|
| Sick | 10 |

Setext two
----------

Last words.
"""


def test_markdown_headings_lists_code_and_tables() -> None:
    document = extract(MARKDOWN, "kb/handbook.md")
    assert document.title == "Employee Handbook"
    assert headings(document) == [(1, "Vacation"), (2, "Sick leave"), (2, "Setext two")]
    texts = [b.text for b in body(document)]
    assert texts == [
        "Welcome to ACME, see the intranet and snake_case names.",
        "You get 25 days of paid vacation per year.",
        "item one",
        "item two continues here",
        "Call your manager before 9am.",
        "def days(year):\n    return 25",
        "Kind | Days",
        "Sick | 10",
        "Last words.",
    ]
    passages = chunk(document)
    assert [p.heading for p in passages] == [
        "",
        "Vacation",
        "Vacation > Sick leave",
        "Vacation > Setext two",
    ]
    assert "def days(year):\n    return 25" in passages[2].content


def test_markdown_title_falls_back_to_the_first_h1_then_the_file_name() -> None:
    assert extract(b"intro\n\n# The Guide\n\ntext\n", "g.md").title == "The Guide"
    assert extract(b"## Sub only\n\ntext\n", "g.md").title == "Sub only"
    assert extract(b"just text\n", "dir/g.md").title == "g.md"


# --- html -------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>Leave policy — ACME intranet</title>
<style>p { color: red }</style><script>var hidden = "script text";</script></head>
<body>
<header><a href="/">ACME home</a> site banner</header>
<nav><ul><li>Menu entry</li></ul></nav>
<div role="navigation">Breadcrumbs here</div>
<main>
  <h1>Leave policy<a class="headerlink" href="#x">¶</a></h1>
  <p>Every employee gets <b>25 days</b> of
     paid leave.</p>
  loose text in main
  <h2>Requests</h2>
  <ul><li>Ask your manager</li><li>Use the <em>portal</em><ul><li>nested item</li></ul></li></ul>
  <dl><dt>Deadline</dt><dd>Two weeks ahead.</dd></dl>
  <pre>curl -X POST /leave
  --data days=3</pre>
  <table><tr><th>Kind</th><th>Days</th></tr><tr><td>Sick</td><td>10</td></tr></table>
  <blockquote>Rest well.</blockquote>
  <figure><img src="x.png" alt="chart"><figcaption>Leave taken by month</figcaption></figure>
  <noscript>Enable JavaScript</noscript><template><p>template text</p></template>
</main>
<aside>Related: travel policy</aside>
<footer>Copyright ACME</footer>
</body></html>"""


def test_html_main_content_headings_and_blocks() -> None:
    document = extract(HTML.encode(), "policy.html")
    assert document.title == "Leave policy — ACME intranet"
    assert headings(document) == [(1, "Leave policy"), (2, "Requests")]
    assert [b.text for b in body(document)] == [
        "Every employee gets 25 days of paid leave.",
        "loose text in main",
        "Ask your manager",
        "Use the portal",
        "nested item",
        "Deadline",
        "Two weeks ahead.",
        "curl -X POST /leave\n  --data days=3",
        "Kind | Days",
        "Sick | 10",
        "Rest well.",
        "Leave taken by month",
    ]
    everything = " ".join(b.text for b in document.blocks)
    for gone in ("script text", "color", "Menu entry", "Breadcrumbs", "Copyright", "banner"):
        assert gone not in everything
    assert [p.heading for p in chunk(document)] == ["Leave policy", "Leave policy > Requests"]


def test_html_without_main_reads_its_one_article_or_else_the_body() -> None:
    page = b"""<html><body><nav>skip</nav><div>Intro <span>text</span><p>para</p>tail</div>
    <article><header><h1>Article title</h1></header><p>Article text.</p></article>
    <aside>Aside text</aside><footer>foot</footer></body></html>"""
    document = extract(page, "x.htm")
    assert document.title == "Article title"  # no <title>: the first h1
    # the one <article> is the content; a <header> inside it is the article's, and kept
    assert [b.text for b in document.blocks] == ["Article title", "Article text."]
    page = page.replace(b"article>", b"section>")  # no article: the body, less its <header>
    assert [b.text for b in extract(page, "x.htm").blocks] == [
        "Intro text",
        "para",
        "tail",
        "Article text.",
        "Aside text",
    ]


def test_html_legacy_charset() -> None:
    page = (
        '<html><head><meta charset="windows-1252"><title>Café</title></head>'
        "<body><p>crème brûlée</p></body></html>"
    )
    document = extract(page.encode("cp1252"), "menu.html")
    assert document.title == "Café"
    assert body(document)[0].text == "crème brûlée"


def test_html_with_no_text() -> None:
    assert unreadable(
        b"<html><body><script>x()</script><nav>menu</nav></body></html>", "a.html"
    ) == ("no text found")


# --- pdf --------------------------------------------------------------------------------------


def make_pdf(pages: list[list[str]], *, title: str | None = None, **options: Any) -> bytes:
    """A PDF with one list of paragraphs per page; `sections` maps page index to an outline
    entry (level, title) written as a heading line at the top of that page."""
    sections: dict[int, tuple[int, str]] = options.pop("sections", {})
    header: str | None = options.pop("header", None)

    class Pdf(FPDF):
        def header(self) -> None:
            if header:
                self.set_font("Helvetica", size=8)
                self.cell(0, 5, header)
                self.ln(8)

        def footer(self) -> None:
            if header:
                self.set_y(-15)
                self.set_font("Helvetica", size=8)
                self.cell(0, 10, f"Page {self.page_no()}", align="C")

    pdf = Pdf()
    if title:
        pdf.set_title(title)
    for index, paragraphs in enumerate(pages):
        pdf.add_page()
        if index in sections:
            level, name = sections[index]
            pdf.start_section(name, level=level)
            pdf.set_font("Helvetica", "B", 14)
            pdf.cell(0, 8, name)
            pdf.ln(10)
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(4)
    if "encryption" in options:
        pdf.set_encryption(**options["encryption"])
    return bytes(pdf.output())


def test_pdf_pages_outline_headings_and_title() -> None:
    rng = random.Random(6)
    pages = [[prose(rng, 3), prose(rng, 2)] for _ in range(5)]
    pages[3].append("The refund form is kept by the finance team.")
    data = make_pdf(
        pages,
        title="Finance Manual",
        sections={0: (0, "Introduction"), 2: (0, "Refunds"), 3: (1, "Forms")},
    )
    document = extract(data, "manual.pdf", "application/pdf")
    assert document.title == "Finance Manual"
    assert headings(document) == [(1, "Introduction"), (1, "Refunds"), (2, "Forms")]
    assert all(b.text != "Introduction" for b in body(document))  # the heading line is not body
    for number, paragraphs in enumerate(pages, start=1):
        on_page = " ".join(b.text for b in body(document) if b.page == number)
        assert all(paragraph in on_page for paragraph in paragraphs), number
    passages = chunk(document)
    form = next(p for p in passages if "refund form is kept" in p.content)
    assert form.heading == "Refunds > Forms" and form.page == 4
    assert [p.page for p in passages if p.heading == "Refunds"] == [3]  # a section on page 3
    assert [p.heading for p in passages] == ["Introduction", "Refunds", "Refunds > Forms"]


def test_pdf_running_headers_and_page_numbers_are_dropped() -> None:
    rng = random.Random(7)
    pages = [[prose(rng, 4)] for _ in range(8)]
    document = extract(make_pdf(pages, header="ACME Employee Handbook"), "h.pdf")
    text = "\n".join(b.text for b in document.blocks)
    assert "ACME Employee Handbook" not in text and "Page 3" not in text
    assert pages[5][0][:60] in " ".join(b.text for b in document.blocks)
    assert document.title == "h.pdf"  # no metadata title, no heading: the file name


def test_a_300_page_pdf_is_read_whole_and_quickly() -> None:
    rng = random.Random(8)
    pages = []
    for number in range(1, 301):
        paragraphs = [f"Page marker {number}: " + prose(rng, 4), prose(rng, 2)]
        if number == 217:
            paragraphs.append("The violet submarine docks at Harwich every second Tuesday.")
        pages.append(paragraphs)
    data = make_pdf(pages, title="Big manual")
    started = time.perf_counter()
    document = extract(data, "big.pdf")
    extracted = time.perf_counter()
    passages = chunk(document)
    done = time.perf_counter()
    print(
        f"\n300-page PDF ({len(data):,} bytes): extract {extracted - started:.2f} s,"
        f" chunk {done - extracted:.3f} s, {len(document.blocks)} blocks, {len(passages)} passages"
    )
    for number in range(1, 301):
        on_page = [b.text for b in document.blocks if b.page == number]
        assert any(f"Page marker {number}:" in text for text in on_page), number
    sentence = "The violet submarine docks at Harwich every second Tuesday."
    assert [b.page for b in document.blocks if sentence in b.text] == [217]
    hit = [p for p in passages if sentence in p.content]  # a passage's page: where it starts
    assert hit and hit[0].page in (216, 217)
    assert all(p.page is not None and 1 <= p.page <= 300 for p in passages)


def test_pdf_without_text_layer() -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 150, style="F")  # an image-like page: no text at all
    message = unreadable(bytes(pdf.output()), "scan.pdf")
    assert message == "no text found (a scanned PDF without a text layer?)"


def test_corrupt_pdfs_are_reported() -> None:
    good = make_pdf([["Some text to read."], ["More text."]])
    for broken in (good[: len(good) // 3], good[: len(good) * 2 // 3]):
        message = unreadable(broken, "broken.pdf")
        assert message.startswith("this PDF is damaged"), message
    noise = random.Random(9).randbytes(5000)
    assert unreadable(noise, "noise.pdf") == "this is not a PDF (no %PDF header)"
    assert unreadable(b"%PDF-1.7\n" + noise, "noise.pdf").startswith("this PDF is damaged")


def _pdf_with_broken_pages(pages: int, broken: set[int]) -> bytes:
    """An uncompressed PDF whose pages in `broken` (1-based) have a content stream pypdf
    cannot parse (a '>' where a string should open: same length, offsets intact)."""
    pdf = FPDF()
    pdf.set_compression(False)
    pdf.set_font("Helvetica", size=11)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 6, f"Text of page {number}. It is here.")
    data = bytes(pdf.output())
    for number in broken:
        at = data.index(f"(Text of page {number}.".encode())
        data = data[:at] + b">" + data[at + 1 :]
    return data


def test_a_few_unparsable_pages_cost_only_those_pages() -> None:
    document = extract(_pdf_with_broken_pages(12, {5}), "glitch.pdf")
    pages = {b.page for b in body(document)}
    assert pages == set(range(1, 13)) - {5}
    assert body(document)[4].text == "Text of page 6. It is here."
    message = unreadable(_pdf_with_broken_pages(12, {2, 5, 9}), "bad.pdf")
    assert message.startswith("this PDF is damaged: 3 of its 12 pages cannot be read (page 2:")


def test_encrypted_pdfs() -> None:
    locked = make_pdf([["Secret plans."]], encryption={"owner_password": "o", "user_password": "u"})
    assert unreadable(locked, "locked.pdf") == (
        "the PDF is encrypted (password protected): it cannot be read"
    )
    # restricted (an owner password only): anyone may open it, so it is read
    open_ = make_pdf([["Open plans."]], encryption={"owner_password": "o"})
    assert body(extract(open_, "open.pdf"))[0].text == "Open plans."


# --- docx -------------------------------------------------------------------------------------


def make_docx(title: str | None = "Staff Handbook") -> bytes:
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading("Handbook", level=0)  # the "Title" style
    document.add_paragraph("Welcome aboard.")
    document.add_heading("Leave", level=1)
    document.add_paragraph("You get   25 days of vacation.")
    document.add_heading("Sick leave", level=2)
    document.add_paragraph("Call in before 9am.", style="List Bullet")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["Kind", "Days", "Paid"], ["Sick", "10", "yes"], ["Merged", "", ""]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(2, 1).merge(table.cell(2, 2)).text = "spans two"
    document.add_heading("Pay", level=1)
    document.add_paragraph("")
    document.add_paragraph("Monthly.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_headings_paragraphs_tables_and_title() -> None:
    document = extract(make_docx(), "hr/handbook.docx")
    assert document.title == "Staff Handbook"
    assert headings(document) == [(1, "Handbook"), (1, "Leave"), (2, "Sick leave"), (1, "Pay")]
    assert [b.text for b in body(document)] == [
        "Welcome aboard.",
        "You get 25 days of vacation.",
        "Call in before 9am.",
        "Kind | Days | Paid",
        "Sick | 10 | yes",
        "Merged | spans two",
        "Monthly.",
    ]
    assert [(p.heading, p.content) for p in chunk(document)] == [
        ("Handbook", "Welcome aboard."),
        ("Leave", "You get 25 days of vacation."),
        (
            "Leave > Sick leave",
            "Call in before 9am.\nKind | Days | Paid\nSick | 10 | yes\nMerged | spans two",
        ),
        ("Pay", "Monthly."),
    ]
    assert extract(make_docx(title=None), "h.docx").title == "Handbook"  # the first heading


def test_docx_zip_bomb_is_refused() -> None:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(make_docx()), "r") as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for item in source.infolist():
            bomb.writestr(item, source.read(item))
        with bomb.open("word/media/filler.bin", "w") as filler:
            for _ in range(20):  # 20 MB of zeros: about 20 kB deflated
                filler.write(bytes(1024 * 1024))
    data = out.getvalue()
    assert len(data) < 100_000
    message = unreadable(data, "bomb.docx")
    assert "zip bomb" in message


def test_docx_over_the_uncompressed_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kb_extract, "DOCX_MAX_UNCOMPRESSED", 10_000)
    assert "zip bomb" in unreadable(make_docx(), "big.docx")


def test_broken_docx_is_reported() -> None:
    assert unreadable(b"not a zip at all", "a.docx") == (
        "this Word document is damaged: it is not a zip archive"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "a zip, but no Word document inside")
    assert unreadable(out.getvalue(), "a.docx").startswith("this Word document is damaged")
    truncated = make_docx()[:-300]
    assert "Word document is damaged" in unreadable(truncated, "a.docx")


# --- csv and json -----------------------------------------------------------------------------


def test_csv_rows_name_their_columns() -> None:
    data = b"name;days;note\nAlice;25;\n;;\nBob;30;part time;extra\n"
    document = extract(data, "leave.csv")
    assert document.title == "leave.csv"
    assert [b.text for b in document.blocks] == [
        "name: Alice; days: 25",
        "name: Bob; days: 30; note: part time; column 4: extra",
    ]
    quoted = b'q,a\n"How many days, in total?","25, plus holidays"\n'
    assert body(extract(quoted, "faq.csv"))[0].text == (
        "q: How many days, in total?; a: 25, plus holidays"
    )


def test_json_is_flattened_per_top_level_key_and_element() -> None:
    value = {
        "company": {"name": "ACME", "address": {"city": "Paris", "zip": None}},
        "employees": [{"name": "Ann", "roles": ["CEO", "founder"]}, {"name": "Bob"}],
        "tags": ["a", "b"],
        "active": True,
    }
    document = extract(json.dumps(value).encode(), "org.json")
    assert [b.text for b in document.blocks] == [
        "company.name: ACME\ncompany.address.city: Paris",
        "employees[0].name: Ann\nemployees[0].roles[0]: CEO\nemployees[0].roles[1]: founder",
        "employees[1].name: Bob",
        "tags[0]: a\ntags[1]: b",
        "active: true",
    ]
    faq = [{"q": "Vacation days?", "a": "25 per year"}, {"q": "Sick days?", "a": "10"}]
    assert [b.text for b in extract(json.dumps(faq).encode(), "faq.json").blocks] == [
        "q: Vacation days?\na: 25 per year",
        "q: Sick days?\na: 10",
    ]


def test_invalid_and_deeply_nested_json() -> None:
    assert unreadable(b'{"a": ', "a.json") == "invalid JSON: Expecting value at line 1, column 7"
    deep = b"[" * 100_000 + b"]" * 100_000
    assert unreadable(deep, "deep.json") == "the JSON is nested too deeply to be read"
    objects = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert unreadable(objects, "deep.json") == "the JSON is nested too deeply to be read"


def test_json_deep_but_parseable_is_flattened_without_recursion() -> None:
    value: Any = "bottom"
    for _ in range(900):
        value = {"k": value}
    document = extract(json.dumps(value).encode(), "d.json")
    assert document.blocks[0].text.endswith(".k: bottom")


# --- limits and robustness --------------------------------------------------------------------


def test_text_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kb_extract, "MAX_TEXT", 1000)
    limit = "more than 1,000 characters of text (the limit)"
    assert limit in unreadable(b"word " * 300, "a.txt")
    html = b"<html><body>" + b"<p>word word word</p>" * 100 + b"</body></html>"
    assert limit in unreadable(html, "a.html")
    pages = [[f"Page {i} " + "text " * 100] for i in range(5)]
    assert limit in unreadable(make_pdf(pages), "a.pdf")
    assert extract(b"word " * 100, "a.txt").blocks


def test_mangled_files_never_raise_anything_but_unreadable_document() -> None:
    rng = random.Random(10)
    samples = {
        "a.pdf": make_pdf([["Some text to read here."], ["And on page two."]], title="T"),
        "a.docx": make_docx(),
        "a.html": HTML.encode(),
        "a.md": MARKDOWN,
        "a.json": json.dumps({"a": [1, {"b": "c"}]}).encode(),
        "a.csv": b"a,b\n1,2\n3,4\n",
    }
    outcomes = {"read": 0, "unreadable": 0}
    for name, data in samples.items():
        for _ in range(40):
            mangled = bytearray(data)
            for _ in range(rng.randint(1, 20)):
                mangled[rng.randrange(len(mangled))] = rng.randrange(256)
            if rng.random() < 0.3:
                mangled = mangled[: rng.randrange(1, len(mangled))]
            try:
                document = extract(bytes(mangled), name)
            except UnreadableDocument as e:
                assert str(e)
                outcomes["unreadable"] += 1
            else:
                assert isinstance(document, Document)
                assert all(isinstance(p, Passage) for p in chunk(document))
                outcomes["read"] += 1
    assert outcomes["read"] and outcomes["unreadable"]


def test_extraction_is_deterministic() -> None:
    for data, name in ((make_docx(), "a.docx"), (HTML.encode(), "a.html"), (MARKDOWN, "a.md")):
        assert extract(data, name) == extract(data, name)
