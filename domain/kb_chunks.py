"""Knowledge-base documents and how they are cut into passages for the index.

An extractor (infra.kb_extract) turns a file into a `Document`: its title and its structural
units (`Block`s: headings and body text) in reading order. `chunk` cuts a document into
`Passage`s by structure: a heading closes the passage before it and sets the heading path the
following passages carry; body blocks are packed into passages of up to `max_chars`; a block
longer than that is split at sentence boundaries (at line ends for preformatted text), then at
whitespace, then anywhere. Consecutive passages of one section (no heading between them)
overlap by up to `overlap` characters, cut at a sentence or word boundary, so that a thought
running over the cut is found whole in one of them.

A block whose text holds a newline is preformatted (code, a JSON object's lines, an indented
listing): its lines are kept, dedented, with trailing blanks, tabs and runs of blank lines
tidied. Any other block is prose: its whitespace is collapsed to single spaces.

Passages never repeat their heading (the index keeps it beside the content); none is empty.
Everything here is deterministic: the same document always gives the same passages.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

MAX_CHARS = 1000  # about 256 tokens: what all-MiniLM-L6-v2 reads of a passage
OVERLAP = 150
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Block:
    """One structural unit of a document, in reading order."""

    text: str
    level: int = 0  # 0: body text (paragraph, list item, table row, code); 1-6: a heading
    page: int | None = None  # PDFs: the page it is on (1-based)


@dataclass(frozen=True)
class Document:
    title: str  # <title>, first h1, docx core title, PDF metadata title, first heading, file name
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Passage:
    heading: str  # the heading path above the passage, " > " joined ("" if none)
    position: int  # 0-based order in the document
    content: str  # the passage's text
    page: int | None  # the page of its first block (PDFs)


class UnreadableDocument(Exception):
    """A file the knowledge base cannot read; str() says what is wrong, for the user."""


# A sentence ends at . ! ? or an ellipsis, perhaps followed by a closing quote or bracket,
# before whitespace and something that does not start in lowercase ("e.g. this" is one
# sentence); at a CJK full stop it ends with no space after it.
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+(?=[^\s\-a-z\u00df-\u00ff])"
    r"|(?<=[\u3002\uff01\uff1f])"
)
_BLANK_LINES = re.compile(r"\n{3,}")
_OTHER_SPACE = re.compile(r"[^\S\n\t ]")  # \r, \f, \v, no-break and other unicode spaces


@dataclass(frozen=True)
class _Piece:
    """A unit the packer places whole: a block, a part of a long one, or (for an overlap) a
    sentence or line of one."""

    text: str
    joiner: str  # what joins it to the piece before it in a passage ("\n" starts a block)
    page: int | None
    preformatted: bool


def normalise(text: str) -> str:
    """Prose: whitespace collapsed. Preformatted (a newline inside): lines kept, dedented,
    tabs expanded, trailing blanks and runs of blank lines removed."""
    text = _OTHER_SPACE.sub(" ", text.replace("\r\n", "\n")).strip("\n")
    if "\n" not in text.strip():
        return " ".join(text.split())
    lines = [line.rstrip() for line in text.expandtabs(4).split("\n")]
    text = textwrap.dedent("\n".join(lines)).strip("\n")
    return _BLANK_LINES.sub("\n\n", text)


def sentences(text: str) -> list[str]:
    """Prose cut after each sentence (the parts, stripped, are never empty)."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def _split_words(text: str, limit: int) -> list[tuple[str, bool]]:
    """`text` in parts of at most `limit` characters, cut at a space where there is one,
    anywhere where there is none; with each part, whether a space came before it. (Indexes,
    not slices of the rest: a huge block is cut in linear time.)"""
    parts: list[tuple[str, bool]] = []
    spaced = False
    start, end = 0, len(text)
    while end - start > limit:
        cut = text.rfind(" ", start, start + limit + 1)
        if cut <= start or not text[start:cut].strip():
            parts.append((text[start : start + limit], spaced))
            start += limit
        else:
            parts.append((text[start:cut].rstrip(), spaced))
            start = cut
        spaced = text[start] == " "
        while start < end and text[start] == " ":
            start += 1
    if start < end:
        parts.append((text[start:], spaced))
    return parts


def _units(piece: _Piece) -> list[_Piece]:
    """A piece as its sentences (prose) or lines (preformatted), joined as in the piece."""
    if not piece.preformatted:
        parts = sentences(piece.text)
        return [
            _Piece(part, piece.joiner if i == 0 else " ", piece.page, False)
            for i, part in enumerate(parts)
        ]
    units: list[_Piece] = []
    joiner = piece.joiner
    for line in piece.text.split("\n"):
        if not line.strip():  # a blank line is kept as the joiner of the line after it
            joiner = "\n\n" if units else joiner
            continue
        units.append(_Piece(line, joiner, piece.page, True))
        joiner = "\n"
    return units


def _pieces(text: str, page: int | None, limit: int, overlap: int) -> list[_Piece]:
    """A block as pieces of at most `limit` characters: the whole block when it fits, else its
    sentences (lines, when preformatted); one still longer than `limit - overlap` is cut at
    whitespace into parts that leave room for the overlap before each."""
    block = _Piece(text, "\n", page, "\n" in text)
    if len(text) <= limit:
        return [block]
    pieces: list[_Piece] = []
    for unit in _units(block):
        if len(unit.text) <= limit - overlap:
            pieces.append(unit)
            continue
        inner = "\n" if unit.preformatted else " "
        for i, (part, spaced) in enumerate(_split_words(unit.text, limit - overlap)):
            joiner = unit.joiner if i == 0 else inner if spaced else ""
            pieces.append(_Piece(part, joiner, page, unit.preformatted))
    return pieces


def _tail(pieces: list[_Piece], limit: int) -> list[_Piece]:
    """The end of a passage made of `pieces`, at most `limit` characters long: its last whole
    sentences (lines) when they fit, else the last words of its last one."""
    if limit <= 0 or not pieces:
        return []
    taken: list[_Piece] = []
    size = 0
    for unit in (u for piece in reversed(pieces) for u in reversed(_units(piece))):
        grown = size + len(unit.text) + (len(taken[-1].joiner) if taken else 0)
        if grown > limit:
            if not taken:  # the last sentence alone is too long: its last words
                words = unit.text[-limit:]
                if len(unit.text) > limit and not unit.text[-limit - 1].isspace():
                    space = re.search(r"\s", words)
                    words = words[space.end() :] if space else words  # one long word
                words = words.strip()
                return [_Piece(words, unit.joiner, unit.page, unit.preformatted)] if words else []
            break
        taken.append(unit)
        size = grown
    return taken[::-1]


def _length(pieces: list[_Piece]) -> int:
    return sum(len(p.text) + len(p.joiner) for p in pieces[1:]) + (
        len(pieces[0].text) if pieces else 0
    )


class _Section:
    """Packs one section's pieces into passages, consecutive ones overlapping."""

    def __init__(self, heading: str, max_chars: int, overlap: int, out: list[Passage]) -> None:
        self.heading = heading
        self.max_chars = max_chars
        self.overlap = overlap
        self.out = out
        self.pieces: list[_Piece] = []
        self.size = 0

    def add(self, piece: _Piece) -> None:
        if self.pieces and self.size + len(piece.joiner) + len(piece.text) > self.max_chars:
            room = self.max_chars - len(piece.joiner) - len(piece.text)
            carried = _tail(self.pieces, min(self.overlap, room))
            if _length(carried) >= self.size:  # all of it: a short passage is not repeated
                carried = []
            self.finish()
            for unit in carried:
                self._append(unit)
        self._append(piece)

    def _append(self, piece: _Piece) -> None:
        self.size += len(piece.text) + (len(piece.joiner) if self.pieces else 0)
        self.pieces.append(piece)

    def finish(self) -> None:
        """Emits the open passage, if any."""
        if not self.pieces:
            return
        first, *rest = self.pieces
        content = first.text + "".join(p.joiner + p.text for p in rest)
        self.out.append(Passage(self.heading, len(self.out), content, first.page))
        self.pieces, self.size = [], 0


def chunk(document: Document, max_chars: int = MAX_CHARS, overlap: int = OVERLAP) -> list[Passage]:
    """The document's passages, in order (see the module's docstring)."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    overlap = max(0, min(overlap, max_chars // 2))  # each passage brings something new
    out: list[Passage] = []
    path: list[tuple[int, str]] = []
    section = _Section("", max_chars, overlap, out)
    for block in document.blocks:
        text = normalise(block.text)
        if not text:
            continue
        if block.level > 0:
            section.finish()
            heading = " ".join(text.split())
            path = [(level, name) for level, name in path if level < block.level]
            path.append((block.level, heading))
            section = _Section(
                HEADING_SEPARATOR.join(name for _, name in path), max_chars, overlap, out
            )
            continue
        for piece in _pieces(text, block.page, max_chars, overlap):
            section.add(piece)
    section.finish()
    return out
