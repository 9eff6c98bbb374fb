"""Log lines for journald: levels, priority prefix under systemd, JSON, structured fields."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile

import pytest

from appliance.service.logs import setup_logging, under_journald


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _emit(fmt: str, env: dict[str, str], stream) -> None:
    setup_logging("info", fmt, env, stream)
    log = logging.getLogger("appliance.test")
    log.debug("hidden")
    log.info("call ended", extra={"fields": {"call": "call-3", "audio_s": 12.5,
                                             "note": "two words"}})
    log.error("device lost\nsecond line")


def test_text_lines_carry_level_logger_and_fields() -> None:
    buf = io.StringIO()
    _emit("text", {}, buf)
    lines = buf.getvalue().splitlines()
    assert lines == ['INFO appliance.test: call ended call=call-3 audio_s=12.5 note="two words"',
                     "ERROR appliance.test: device lost second line"]


def test_json_lines_parse() -> None:
    buf = io.StringIO()
    _emit("json", {}, buf)
    objs = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [o["level"] for o in objs] == ["info", "error"]
    assert objs[0]["call"] == "call-3" and objs[0]["audio_s"] == 12.5
    assert objs[0]["msg"] == "call ended" and objs[0]["t"].endswith("Z")


def test_auto_uses_syslog_priorities_only_when_journald_owns_stderr() -> None:
    with tempfile.TemporaryFile("w+") as f:
        st = os.fstat(f.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert under_journald(env, f)
        _emit("auto", env, f)
        f.seek(0)
        lines = f.read().splitlines()
    assert lines[0].startswith("<6>appliance.test: call ended")
    assert lines[1].startswith("<3>appliance.test: device lost")
    # a JOURNAL_STREAM inherited by a child writing elsewhere is not journald
    buf = io.StringIO()
    assert not under_journald({"JOURNAL_STREAM": "1:2"}, buf)
    _emit("auto", {"JOURNAL_STREAM": "1:2"}, buf)
    assert buf.getvalue().startswith("INFO ")


def test_setup_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        setup_logging("warning", "text", {}, io.StringIO())
        setup_logging("warning", "text", {}, io.StringIO())
        ours = [h for h in root.handlers if h.get_name() == "appliance-stderr"]
        assert len(ours) == 1 and other in root.handlers
    finally:
        root.removeHandler(other)
