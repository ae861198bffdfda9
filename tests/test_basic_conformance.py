"""The conformance corpus: every dialog of tests/basic/conformance plays its scripted chat.

Each conversation runs parse -> start -> resume with a fake platform (fixed clock, seeded
random, recorded effects), and the state goes through JSON between every turn.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.basic import validate
from tests.basic.chat import play

CORPUS = Path(__file__).parent / "basic" / "conformance"
DIALOGS = sorted(p for p in CORPUS.glob("*.bas") if p.name.count(".") == 1)


def test_the_corpus_is_large_enough() -> None:
    assert len(DIALOGS) >= 40
    assert all(p.with_suffix(".chat").exists() for p in DIALOGS)


@pytest.mark.parametrize("dialog", DIALOGS, ids=lambda p: p.stem)
def test_dialog_plays_its_chat(dialog: Path) -> None:
    play(dialog)


@pytest.mark.parametrize("dialog", DIALOGS, ids=lambda p: p.stem)
def test_corpus_dialogs_validate_without_errors(dialog: Path) -> None:
    helpers = {p.name[len(dialog.stem) + 1 :] for p in CORPUS.glob(f"{dialog.stem}.*.bas")}
    report = validate(dialog.read_text(encoding="utf-8"), known_dialogs=helpers)
    assert report.errors == []
