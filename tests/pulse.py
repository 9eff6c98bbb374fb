"""A private PulseAudio server for real-device tests.

:class:`PulseServer` starts ``pulseaudio`` in the foreground as a subprocess with its own
runtime directory (nothing of the machine's audio set-up is touched), a null sink ``call``
(16 kHz stereo) whose monitor is the default source.  Through the ALSA ``pulse`` device
(libasound2-plugins), PortAudio then records whatever ``paplay -d call`` plays.  PortAudio
enumerates devices when it is initialised, so the capturing code runs in a subprocess with
:attr:`PulseServer.env`.

``python -m tests.pulse OUT.npz SECONDS`` (inside that environment) captures through
:class:`~appliance.audio.capture.CaptureSource` (stereo wiring, device ``pulse``), prints
``flowing`` once audio arrives, and saves the blocks and the source's stats.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BINARIES = ("pulseaudio", "pactl", "paplay", "sox")


def missing() -> str | None:
    """Why the real-device test cannot run here, or None."""
    for b in BINARIES:
        if shutil.which(b) is None:
            return f"{b} is not installed (pulseaudio, pulseaudio-utils, sox)"
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") and not glob.glob(
            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"):
        return "the ALSA pulse plugin is not installed (libasound2-plugins)"
    return None


class PulseServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pa-"))  # short: the socket path is limited
        run = self.dir / "run"
        self.socket = run / "native"
        self.env = {**os.environ, "HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.dir),
                    "PULSE_RUNTIME_PATH": str(run), "PULSE_SERVER": f"unix:{self.socket}"}
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "pulseaudio.log"

    def start(self, timeout_s: float = 15.0) -> None:
        cmd = ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1",
               "--disallow-exit", "--log-target=stderr",
               "--load=module-native-protocol-unix",
               "--load=module-null-sink sink_name=call rate=16000 channels=2",
               "--load=module-always-sink"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {self.log.read_text()[-2000:]}")
            if self.socket.exists() and self.pactl("info", check=False).returncode == 0:
                self.pactl("set-default-source", "call.monitor")
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("pulseaudio did not come up in time")

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True,
                              timeout=10, check=check)

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", "-d", "call", str(wav)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def capture_main(out: str, seconds: float) -> None:
    """Capture ``seconds`` of audio from the ALSA ``pulse`` device into ``out`` (npz)."""
    import asyncio

    import numpy as np

    from appliance.audio.capture import CaptureSource
    from appliance.config import AudioConfig
    from appliance.stream.pipeline import BlockQueue

    src = CaptureSource(AudioConfig(device="pulse"))

    async def main() -> list[Any]:
        queue = BlockQueue(1_000_000)
        task = asyncio.create_task(src.run(queue))
        deadline = time.monotonic() + 10
        while not src.flowing and time.monotonic() < deadline:  # noqa: ASYNC110 - a poll
            await asyncio.sleep(0.02)
        print("flowing" if src.flowing else "not flowing", flush=True)
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return [await queue.get() for _ in range(queue.qsize())]

    blocks = asyncio.run(main())
    np.savez(out, t=np.array([b.t_s for b in blocks]),
             agent=np.concatenate([b.agent for b in blocks]),
             customer=np.concatenate([b.customer for b in blocks]),
             stats=np.array(json.dumps(src.stats())))


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        capture_main(sys.argv[1], float(sys.argv[2]))
