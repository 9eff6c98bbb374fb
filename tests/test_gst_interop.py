"""Interoperability with a real RTP sender: GStreamer sends a 30 s excerpt of the demo call
into the box at real-time pace, the agent's leg µ-law (``mulawenc ! rtppcmupay``), the
customer's A-law (``alawenc ! rtppcmapay``), 20 ms packets, each leg to its own port.  The
box (the RTP listener on its own clock and ticker, a real ShardPool) gives the cues of the
same excerpt analysed from its WAV through the file path, within the stated tolerance."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.audio.rtp.listener import RtpListener
from appliance.audio.tap import TapCalls
from appliance.config.tap import TapRtpConfig
from appliance.stream.shards import ShardPool
from tests.pbxsend import CFG, compare, cues, demo_legs_8k, event, reference, write_wav
from tests.waiting import until

EXCERPT_S = 30.0
"""The demo's first 30 s: the greeting, the agent's interruption (15.0 s) and a fast
passage (24.6 s)."""
TOLERANCE_S = 0.1
"""Cue times against the excerpt's WAV (a real sender, real time, the box's own clock)."""
ELEMENTS = ("filesrc", "wavparse", "audioconvert", "audioresample", "mulawenc", "alawenc",
            "rtppcmupay", "rtppcmapay", "udpsink")
PTIME = ("min-ptime=20000000", "max-ptime=20000000")  # 20 ms packets, in nanoseconds


def gst_missing() -> str | None:
    for tool in ("gst-launch-1.0", "gst-inspect-1.0"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt: gstreamer1.0-tools)"
    for element in ELEMENTS:
        probe = subprocess.run(["gst-inspect-1.0", element], capture_output=True, timeout=60)
        if probe.returncode != 0:
            return (f"the GStreamer element {element} is missing (apt: "
                    "gstreamer1.0-plugins-base, gstreamer1.0-plugins-good)")
    return None


def leg(wav: Path, law: str, port: int) -> list[str]:
    enc, pay = ("mulawenc", "rtppcmupay") if law == "u" else ("alawenc", "rtppcmapay")
    return ["filesrc", f"location={wav}", "!", "wavparse", "!", "audioconvert", "!",
            "audioresample", "!", "audio/x-raw,rate=8000,channels=1", "!", enc, "!", pay,
            *PTIME, "!", "udpsink", "host=127.0.0.1", f"port={port}"]


def test_gstreamer_rtp_legs_give_the_cues_of_the_excerpts_wav(tmp_path: Path) -> None:
    reason = gst_missing()
    if reason is not None:
        pytest.skip(reason)
    agent, customer = demo_legs_8k(0.0, EXCERPT_S)
    agent_wav = write_wav(tmp_path / "agent.wav", agent)
    customer_wav = write_wav(tmp_path / "customer.wav", customer)
    both_wav = write_wav(tmp_path / "excerpt.wav", agent, customer)
    lines: list[dict[str, Any]] = []

    async def go() -> tuple[dict[str, float], int]:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=1)
        await pool.start()
        await reference(pool, "ref", both_wav)
        await until(lambda: any(e["kind"] == "summary" for e in lines), hang_s=120)
        tap = TapCalls(pool, idle_timeout_s=10.0)
        cfg = TapRtpConfig(enabled=True, ports=["40000"], stream_timeout_s=1.0)
        listener = RtpListener(tap, cfg, ports=[0, 0])  # its own clock and 20 ms ticker
        await listener.start()
        pa, pc = listener.ports
        listener.expect("gst-1", "agent", port=pa)
        listener.expect("gst-1", "customer", port=pc)
        gst = await asyncio.create_subprocess_exec(
            "gst-launch-1.0", "-q", *leg(agent_wav, "u", pa), *leg(customer_wav, "a", pc),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(gst.communicate(), EXCERPT_S + 60)
        assert gst.returncode == 0, err.decode(errors="replace")
        await until(lambda: not tap.is_open("gst-1") and listener.stats()["calls"] == 1,
                    "the call ended after its senders stopped")
        await until(lambda: sum(e["kind"] == "summary" for e in lines) == 2, hang_s=120)
        stats = listener.stats()
        await listener.stop()
        await pool.stop()
        return stats, gst.returncode

    stats, _ = asyncio.run(go())
    compare(cues(lines, "gst-1"), cues(lines, "ref"), TOLERANCE_S)  # (measured: the same)
    assert event(lines, "gst-1", "call_ended")["data"]["duration_s"] == pytest.approx(
        EXCERPT_S, abs=0.2)
    frames = int(EXCERPT_S / 0.02)
    assert stats["packets"] == 2 * frames and stats["lost"] == 0
    assert stats["malformed"] == 0 and stats["unknown"] == 0 and stats["unsupported"] == 0
