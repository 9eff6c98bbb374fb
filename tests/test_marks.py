"""Tests of the marks file parser (appliance.engine.marks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.audio.marks_file import load_marks
from appliance.engine.marks import KNOWN_MARK_EVENTS, Mark, parse_marks
from appliance.errors import MARKS_INVALID, MARKS_NOT_FOUND, ApplianceError


def write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "marks.jsonl"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_parses_sorts_and_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "# hold marks from the PBX\n"
        '{"t": 55.5, "event": "hold_end"}\n'
        "\n"
        "   \n"
        "  # an indented comment\n"
        '{"t": 40, "event": "hold_start", "by": "pbx"}\n'
        '{"t": 55.5, "event": "hold_start"}\r\n'
        '{"t": 0, "event": "hold_end"}',
    )
    marks = load_marks(p)
    assert marks == [
        Mark(0.0, "hold_end"),
        Mark(40.0, "hold_start"),
        Mark(55.5, "hold_end"),  # stable: equal times keep file order
        Mark(55.5, "hold_start"),
    ]
    assert all(isinstance(m.t_s, float) for m in marks)


def test_empty_file_and_bom(tmp_path: Path) -> None:
    assert load_marks(write(tmp_path, "")) == []
    bom = '\ufeff{"t": 1.5, "event": "hold_start"}\n'.encode()
    assert load_marks(write(tmp_path, bom)) == [Mark(1.5, "hold_start")]


def test_mark_is_frozen() -> None:
    m = Mark(1.0, "hold_start")
    with pytest.raises(AttributeError):
        m.t_s = 2.0  # type: ignore[misc]
    assert not hasattr(m, "__dict__")
    assert KNOWN_MARK_EVENTS == ("hold_start", "hold_end")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"t": 40.0, "event": "hold_start"', "not valid JSON"),
        ("t=40 event=hold_start", "not valid JSON"),
        ('[40.0, "hold_start"]', "JSON object"),
        ("42", "JSON object"),
        ('{"event": "hold_start"}', 'missing "t"'),
        ('{"t": "40", "event": "hold_start"}', '"t" must be a number'),
        ('{"t": null, "event": "hold_start"}', '"t" must be a number'),
        ('{"t": true, "event": "hold_start"}', '"t" must be a number'),
        ('{"t": -0.5, "event": "hold_start"}', ">= 0"),
        ('{"t": NaN, "event": "hold_start"}', "finite"),
        ('{"t": Infinity, "event": "hold_start"}', "finite"),
        ('{"t": 40.0}', 'missing "event"'),
        ('{"t": 40.0, "event": "mute_start"}', 'unknown "event" "mute_start"'),
        ('{"t": 40.0, "event": 3}', 'unknown "event" 3'),
        ('{"t": 40.0, "event": ["hold_start"]}', "unknown"),
    ],
)
def test_invalid_line_names_file_line_and_problem(tmp_path: Path, line: str, needle: str) -> None:
    text = '# header\n{"t": 1, "event": "hold_start"}\n' + line + "\n"
    with pytest.raises(ApplianceError) as err:
        load_marks(write(tmp_path, text))
    assert err.value.code == MARKS_INVALID
    assert err.value.message.startswith("marks.jsonl line 3: ")
    assert needle in err.value.message
    assert "\n" not in err.value.message


def test_unknown_event_lists_known_ones() -> None:
    with pytest.raises(ApplianceError) as err:
        parse_marks(['{"t": 1, "event": "hold"}'], source="calls/42.jsonl")
    assert err.value.message.startswith("calls/42.jsonl line 1: ")
    assert "hold_start, hold_end" in err.value.message


def test_invalid_utf8(tmp_path: Path) -> None:
    p = write(tmp_path, b'{"t": 1, "event": "hold_start"}\n{"t": 2, "event": "\xff"}\n')
    with pytest.raises(ApplianceError) as err:
        load_marks(p)
    assert err.value.code == MARKS_INVALID
    assert err.value.message.startswith("marks.jsonl line 2: ")


def test_not_found(tmp_path: Path) -> None:
    for p in (tmp_path / "nope.jsonl", tmp_path):
        with pytest.raises(ApplianceError) as err:
            load_marks(p)
        assert err.value.code == MARKS_NOT_FOUND and str(p) in err.value.message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable(tmp_path: Path) -> None:
    p = write(tmp_path, "")
    p.chmod(0)
    with pytest.raises(ApplianceError) as err:
        load_marks(p)
    assert err.value.code == MARKS_NOT_FOUND


@pytest.mark.parametrize("line", ['{"t": ' + "[" * 3000 + "]" * 3000 + "}",
                                  '{"t": ' + "9" * 5000 + ', "event": "hold_start"}',
                                  '{"t": ' + str(2 ** 1024) + ', "event": "hold_start"}',
                                  '{"t": 1e400, "event": "hold_start"}'])
def test_deep_or_huge_marks_are_a_clean_error(line: str) -> None:
    """A marks line nested 3000 deep, an integer of 5000 digits or 2**1024 (which no float
    holds) is a marks error, not a crash (issue 10, finding 5)."""
    with pytest.raises(ApplianceError):
        parse_marks([line])
