"""The desk's call numbers continue across restarts (the fleet's console keys calls by box
and call id), and a damaged or unwritable counter never stops a call."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from appliance.sinks.call_numbers import FILE_NAME, CallNumbers


def test_numbers_continue_after_a_restart(tmp_path: Path) -> None:
    first = CallNumbers(tmp_path)
    assert [first.next(), first.next(), first.next()] == [1, 2, 3]
    again = CallNumbers(tmp_path)
    assert again.next() == 4
    assert (tmp_path / FILE_NAME).read_text(encoding="ascii") == "4\n"


def test_a_missing_state_dir_is_made(tmp_path: Path) -> None:
    assert CallNumbers(tmp_path / "new" / "state").next() == 1
    assert CallNumbers(tmp_path / "new" / "state").next() == 2


@pytest.mark.parametrize("content", [b"garbage\n", b"\xff\xfe", b"-3", b"9" * 40])
def test_a_damaged_counter_starts_again_with_a_warning(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        numbers = CallNumbers(tmp_path)
    assert numbers.next() == 1 and numbers.next() == 2
    assert "call number" in caplog.text


def test_an_unwritable_counter_still_numbers_the_calls(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="ascii")
    numbers = CallNumbers(blocker / "state")  # a file where the directory should be
    with caplog.at_level(logging.WARNING):
        assert [numbers.next(), numbers.next()] == [1, 2]
    assert caplog.text.count("may repeat") == 1
