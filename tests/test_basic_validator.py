"""The validator corpus: each broken dialog of tests/basic/invalid and its exact report.

A `.expected` file lists `error L:C message` and `warning L:C message` lines in order, and
may start with options: `% known_dialogs a.bas, b` and `% http_allowed`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from domain.basic import BasicSyntaxError, Report, parse, validate

CORPUS = Path(__file__).parent / "basic" / "invalid"
DIALOGS = sorted(CORPUS.glob("*.bas"))


def expected_of(dialog: Path) -> tuple[list[str], frozenset[str], bool]:
    lines = dialog.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    known: frozenset[str] = frozenset()
    http_allowed = False
    for option in (line[2:] for line in lines if line.startswith("% ")):
        name, _, value = option.partition(" ")
        if name == "known_dialogs":
            known = frozenset(v.strip() for v in value.split(","))
        elif name == "http_allowed":
            http_allowed = True
    return [line for line in lines if line and not line.startswith("%")], known, http_allowed


def report_of(dialog: Path) -> Report:
    _, known, http_allowed = expected_of(dialog)
    return validate(
        dialog.read_text(encoding="utf-8"), known_dialogs=known, http_allowed=http_allowed
    )


def lines_of(report: Report) -> list[str]:
    return [f"error {d.line}:{d.column} {d.message}" for d in report.errors] + [
        f"warning {d.line}:{d.column} {d.message}" for d in report.warnings
    ]


def test_the_corpus_has_thirty_broken_dialogs() -> None:
    broken = [d for d in DIALOGS if any(line.startswith("error") for line in expected_of(d)[0])]
    assert len(broken) >= 30


@pytest.mark.parametrize("dialog", DIALOGS, ids=lambda p: p.stem)
def test_report_is_exact(dialog: Path) -> None:
    report = report_of(dialog)
    assert lines_of(report) == expected_of(dialog)[0]
    assert report.valid == (not report.errors)


@pytest.mark.parametrize("dialog", DIALOGS, ids=lambda p: p.stem)
def test_parse_raises_the_first_error(dialog: Path) -> None:
    source = dialog.read_text(encoding="utf-8")
    report = report_of(dialog)
    errors = [e for e in report.errors if "undefined dialog" not in e.message]
    if not errors:
        parse(source)
        return
    with pytest.raises(BasicSyntaxError) as raised:
        parse(source)
    assert (raised.value.line, raised.value.column, raised.value.message) == (
        errors[0].line,
        errors[0].column,
        errors[0].message,
    )


def test_did_you_mean_reads_as_the_issue_says() -> None:
    report = validate('TLAK "hi"')
    assert [str(d) for d in report.errors] == ["Line 1: unknown statement TLAK; did you mean TALK?"]
    assert report.to_data() == {
        "valid": False,
        "errors": [
            {"line": 1, "column": 1, "message": "unknown statement TLAK; did you mean TALK?"}
        ],
        "warnings": [],
    }


def test_a_clean_dialog_is_valid() -> None:
    report = validate('HEAR name AS NAME WITH "Name?"\nTALK "Hi " + name\n')
    assert report.valid and report.errors == [] and report.warnings == []


def test_known_dialogs_compare_without_extension_or_case() -> None:
    source = 'CALL "Billing.bas"\nCALL "billing"\n'
    assert validate(source, known_dialogs={"billing"}).valid
    assert not validate(source).valid


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "(" * 5000 + "1" + ")" * 5000,
        "x = " + "NOT " * 5000 + "1",
        "IF TRUE THEN\n" * 300 + "END IF\n" * 300,
        "x = " + " + ".join(["1"] * 5000),
        'TALK "' + "${" * 3000 + '"',
        "x = a" + ".b" * 5000,
        "x = " + "#{a: " * 2000 + "1" + "}" * 2000,
        '"unclosed\n' * 50,
        "\ufeffTALK 1\r\nTALK 2\r\n",
    ],
    ids=["parens", "nots", "ifs", "sum", "interpolations", "members", "objects", "quotes", "crlf"],
)
def test_pathological_sources_are_reported_not_raised(source: str) -> None:
    report = validate(source)
    assert isinstance(report.valid, bool)


def test_mutated_corpus_dialogs_never_crash_the_validator() -> None:
    """A small seeded fuzz: damaged dialogs give reports, never exceptions."""
    rng = random.Random(7)
    sources = [p.read_text(encoding="utf-8") for p in sorted(CORPUS.parent.glob("*/*.bas"))]
    pieces = ['"', "'", "(", ")", "[", "]", "{", "#{", "${", "\n", ",", ":", "END", "IF", "NEXT"]
    for _ in range(300):
        chars = list(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            position = rng.randint(0, len(chars))
            if rng.random() < 0.4 and chars:
                del chars[min(position, len(chars) - 1)]
            else:
                chars.insert(position, rng.choice(pieces))
        source = "".join(chars)
        report = validate(source)
        if report.valid:
            parse(source)


def test_a_huge_number_is_an_error_not_a_crash() -> None:
    report = validate("x = " + "9" * 10_000 + "\nTALK x\n")
    assert not report.valid
    assert "too large" in report.errors[0].message


@pytest.mark.parametrize("digit", ["³", "①", "٣", "𝟑"])
def test_unicode_digits_are_reported_not_crashed_on(digit: str) -> None:
    """str.isdigit() takes these, int() and float() do not: the lexer reads only ASCII digits."""
    for source in (f"x = 1{digit}\n", f"TALK {digit}\n", f"x = 2.{digit}\n", f"y = 1e{digit}\n"):
        report = validate(source)
        assert not report.valid
        assert any(digit in e.message for e in report.errors), (source, report.errors)
