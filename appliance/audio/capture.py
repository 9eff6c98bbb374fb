"""Live capture: PortAudio input(s) -> 16 kHz int16 :class:`PartyBlock` s in a BlockQueue.

``CaptureSource(cfg.audio)`` is a :class:`~appliance.stream.live.LiveSource`: ``await run(queue)``
captures until cancelled, putting blocks of ``block_s`` with ``queue.put_nowait`` (never
waits; the queue counts its own drops).  ``flowing`` and ``stats()`` report its health.

* Wiring ``stereo``: one input stream with ``max(agent_channel, customer_channel) + 1``
  channels; the two configured channels are the parties.  ``two_devices``: one mono stream
  per party (channel 0 of each device).
* The PortAudio callback only copies the block (and a timestamp) into a bounded deque; a
  full deque drops the block and counts it (``queue_drops``), an input-overflow flag is
  counted (``input_overflows``).  Resampling (soxr, from the device rate) and alignment run
  in the event loop, polled every few milliseconds.
* Time: ``t_s`` is samples delivered / 16000, exactly; the clock starts with the first
  audio and never stops after that.  A party
  whose audio lags the other's by more than 0.5 s (a stalled or lost device; clock drift
  between two devices) is padded with zeros up to the other; when no audio arrives at all
  for 0.5 s, both parties get digital silence paced by the wall clock, so the engine's timers
  (hold, dead air) stay true while a device is away.  Padded audio is counted
  (``fills``, ``filled_s``).  Two flowing devices whose clocks drift are re-aligned with a
  short zero pad on the slower side once it falls ``max(0.15 s, 4 blocks)`` behind.
* A device that goes away (the stream finishes or reports an error, or no audio for
  ``STALL_S``) is logged once, ``flowing`` turns False, and it is reopened by itself with
  exponential backoff (``FIRST_RETRY_S`` doubling up to ``reconnect_max_s``); nothing
  raises out of :meth:`CaptureSource.run` after start-up.  PortAudio is re-initialised
  before a reopen when none of this source's streams is open (to see a re-plugged device).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.audio.devices import (
    InputDevice,
    devices_command,
    refresh,
    resolve_device,
    sounddevice,
)
from appliance.audio.resample import StreamResampler, to_int16
from appliance.config import AudioConfig
from appliance.errors import AUDIO_DEVICE_LOST, CONFIG_INVALID, ApplianceError
from appliance.stream.blocks import PIPELINE_RATE_HZ, PartyBlock
from appliance.stream.pipeline import BlockQueue

__all__ = ["CaptureSource", "devices_command"]

log = logging.getLogger(__name__)

GAP_FILL_S = 0.5  # a party this far behind the other (or both silent this long) gets zeros
STALL_S = 2.0  # an open stream that delivered nothing this long is treated as lost
FLOWING_S = 1.0  # ``flowing`` = every party delivered audio within this many seconds
FIRST_RETRY_S = 0.5  # first reconnect delay; doubles up to AudioConfig.reconnect_max_s
_AGENT, _CUSTOMER = 0, 1


class _Slot:
    """One input stream of the source (stereo: one; two devices: agent, customer)."""

    def __init__(self, name: str, spec: str, channels: tuple[int, ...],
                 parties: tuple[int, ...], purpose: str) -> None:
        self.name = name  # for messages: "input", "agent input", "customer input"
        self.spec = spec
        self.channels = channels  # device channels to take, in party order
        self.parties = parties  # which parties the columns feed
        self.purpose = purpose
        self.n_open = max(channels) + 1
        self.stream: Any = None
        self.device: InputDevice | None = None
        self.rate_hz = 0
        self.gen = 0
        self.resampler: StreamResampler | None = None
        self.finished = False  # PortAudio's finished callback ran
        self.last_cb = 0.0  # monotonic time of the last callback (written by PortAudio)
        self.opened_at = 0.0
        self.overflows = 0  # written only by this slot's callback thread
        self.drops = 0
        self.lost_since: float | None = None
        self.next_try = 0.0
        self.backoff = FIRST_RETRY_S
        self.attempts = 0
        self.opening: asyncio.Future[Any] | None = None
        self.closing: asyncio.Future[Any] | None = None  # keeps the closer task referenced
        self.fresh = False  # the next block is the first of a (re)opened stream
        self.ever_opened = False


@dataclass(frozen=True, slots=True)
class _Opened:
    stream: Any
    device: InputDevice
    rate_hz: int
    gen: int


class CaptureSource:
    """Headset/line capture as a live source (see the module docstring)."""

    def __init__(self, cfg: AudioConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        """Seconds, monotonic, read by the event loop and PortAudio's threads (a test injects
        its event loop's virtual time, the one the polling sleeps on)."""
        if cfg.wiring == "two_devices":
            self._slots = [_Slot("agent input", cfg.agent_device, (0,), (_AGENT,),
                                 "the agent's microphone"),
                           _Slot("customer input", cfg.customer_device, (0,), (_CUSTOMER,),
                                 "the customer's line")]
        else:
            n = max(cfg.agent_channel, cfg.customer_channel) + 1
            self._slots = [_Slot("input", cfg.device, (cfg.agent_channel, cfg.customer_channel),
                                 (_AGENT, _CUSTOMER),
                                 f"the stereo wiring (agent channel {cfg.agent_channel}, "
                                 f"customer channel {cfg.customer_channel}; {n} needed)")]
        # Resolve now: a configuration that names no usable device fails at start-up.
        devs = [resolve_device(s.spec, s.n_open, purpose=s.purpose) for s in self._slots]
        if len(devs) == 2 and devs[0].index == devs[1].index:
            raise ApplianceError(CONFIG_INVALID,
                                 f"[audio] agent_device and customer_device are the same input "
                                 f"{devs[0].label()}; for one device with both parties use "
                                 "wiring = \"stereo\" with agent_channel / customer_channel")
        for s, d in zip(self._slots, devs, strict=True):
            s.device = d
        self._block = max(1, round(cfg.block_s * PIPELINE_RATE_HZ))
        self._raw: deque[tuple[_Slot, int, np.ndarray]] = deque()
        self._raw_max = max(4, round(cfg.queue_s / cfg.block_s)) * len(self._slots)
        self._pend = [np.zeros(0, np.int16), np.zeros(0, np.int16)]
        self._pa_lock = threading.Lock()
        self._live: set[Any] = set()  # streams of this source now open (under _pa_lock)
        self._closed = False  # run() ended: the opener thread must not leave a stream open
        self._emitted = 0
        self._fill_from: float | None = None
        self._fill_done = 0
        self._filling = [False, False]
        self._audio_seen = False
        self.blocks = 0
        self.reconnects = 0
        self.fills = 0
        self.filled_samples = [0, 0]
        self.last_error: str | None = None
        self._started: float | None = None

    # -- health -----------------------------------------------------------------------------
    @property
    def input_overflows(self) -> int:
        return sum(s.overflows for s in self._slots)

    @property
    def queue_drops(self) -> int:
        return sum(s.drops for s in self._slots)

    @property
    def flowing(self) -> bool:
        now = self.clock()
        return all(s.stream is not None and s.last_cb > s.opened_at
                   and now - s.last_cb < FLOWING_S for s in self._slots)

    @property
    def t_s(self) -> float:
        """Audio time delivered so far (seconds)."""
        return self._emitted / PIPELINE_RATE_HZ

    def stats(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks, "input_overflows": self.input_overflows,
            "queue_drops": self.queue_drops, "reconnects": self.reconnects,
            "flowing": self.flowing, "last_error": self.last_error, "fills": self.fills,
            "filled_s": {"agent": round(self.filled_samples[0] / PIPELINE_RATE_HZ, 3),
                         "customer": round(self.filled_samples[1] / PIPELINE_RATE_HZ, 3)},
            "devices": [s.device.name if s.device else None for s in self._slots],
            "rates_hz": [s.rate_hz for s in self._slots],
        }

    # -- PortAudio side (callback threads and the opener thread) ----------------------------
    def _callback_for(self, slot: _Slot, gen: int) -> Any:
        raw, raw_max, clock = self._raw, self._raw_max, self.clock
        cols = list(slot.channels)
        mono = cols == [0] and slot.n_open == 1

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            slot.last_cb = clock()
            if status and getattr(status, "input_overflow", False):
                slot.overflows += 1
            if len(raw) >= raw_max:
                slot.drops += 1
                return
            raw.append((slot, gen, indata.copy() if mono else indata[:, cols]))

        return callback

    def _open(self, slot: _Slot) -> _Opened:
        """Open and start ``slot``'s stream (runs in a worker thread)."""
        sd = sounddevice()
        with self._pa_lock:
            if self._closed:
                raise ApplianceError(AUDIO_DEVICE_LOST, "capture stopped")
            if not self._live and slot.ever_opened:
                refresh()  # nothing of ours is open: let PortAudio see re-plugged devices
            dev = resolve_device(slot.spec, slot.n_open, purpose=slot.purpose)
            rate = self.cfg.sample_rate_hz or dev.default_sample_rate_hz or PIPELINE_RATE_HZ
            gen = slot.gen + 1

            def finished() -> None:
                if slot.gen == gen:
                    slot.finished = True

            stream = sd.InputStream(device=dev.index, channels=slot.n_open, samplerate=rate,
                                    blocksize=max(1, round(self.cfg.block_s * rate)),
                                    dtype="float32", callback=self._callback_for(slot, gen),
                                    finished_callback=finished)
            try:
                stream.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.close()
                raise
            self._live.add(stream)
            return _Opened(stream, dev, int(rate), gen)

    def _close(self, stream: Any) -> None:
        with self._pa_lock:
            self._live.discard(stream)
            with contextlib.suppress(Exception):
                stream.abort()
            with contextlib.suppress(Exception):
                stream.close()

    # -- the event-loop side -------------------------------------------------------------------
    async def run(self, queue: BlockQueue) -> None:
        """Capture into ``queue`` until cancelled; reconnects by itself, never raises."""
        self._started = self.clock()
        for s in self._slots:
            s.last_cb = s.next_try = self._started
            s.lost_since = self._started
        poll = max(0.005, min(0.02, self.cfg.block_s / 2))
        try:
            while True:
                self._supervise()
                self._pump(queue)
                await asyncio.sleep(poll)
        finally:
            with self._pa_lock:
                self._closed = True
                streams = list(self._live)
            for stream in streams:
                self._close(stream)
            for s in self._slots:
                s.stream = None

    def _supervise(self) -> None:
        now = self.clock()
        for s in self._slots:
            if s.opening is not None and s.opening.done():
                self._opened(s, s.opening, now)
            if s.stream is not None:
                reason = self._why_lost(s, now)
                if reason:
                    self._lose(s, reason, now)
            if s.stream is None and s.opening is None and now >= s.next_try:
                s.attempts += 1
                s.opening = asyncio.ensure_future(asyncio.to_thread(self._open, s))

    def _why_lost(self, s: _Slot, now: float) -> str:
        if s.finished:
            return "the stream stopped"
        try:
            if not s.stream.active:
                return "the stream is no longer active"
        except Exception as exc:  # a dead stream may raise on any access
            return f"{type(exc).__name__}: {exc}"
        if now - max(s.last_cb, s.opened_at) > STALL_S:
            return f"no audio for {STALL_S:.0f} s"
        return ""

    def _lose(self, s: _Slot, reason: str, now: float) -> None:
        label = s.device.label() if s.device else repr(s.spec)
        self.last_error = f"{AUDIO_DEVICE_LOST}: {s.name} {label}: {reason}"
        log.warning("audio %s %s went away (%s); reconnecting (retry up to every %g s)",
                    s.name, label, reason, self.cfg.reconnect_max_s)
        stream, s.stream = s.stream, None
        s.gen += 1  # blocks still queued from the old stream are dropped
        s.resampler = None
        s.lost_since = now
        s.backoff = FIRST_RETRY_S
        s.next_try = now + s.backoff
        s.attempts = 0
        s.closing = asyncio.ensure_future(asyncio.to_thread(self._close, stream))

    def _opened(self, s: _Slot, task: asyncio.Future[Any], now: float) -> None:
        s.opening = None
        exc = task.exception() if not task.cancelled() else None
        if task.cancelled() or exc is not None:
            msg = str(exc) if exc is not None else "cancelled"
            first = s.attempts == 1
            self.last_error = f"{AUDIO_DEVICE_LOST}: {s.name} {s.spec!r}: {msg}"
            s.backoff = min(s.backoff * 2, self.cfg.reconnect_max_s)
            s.next_try = now + s.backoff
            (log.warning if first and not s.ever_opened else log.debug)(
                "cannot open audio %s %r (%s); retrying in %.1f s", s.name, s.spec, msg,
                s.backoff)
            return
        o: _Opened = task.result()
        s.stream, s.device, s.rate_hz, s.gen = o.stream, o.device, o.rate_hz, o.gen
        s.finished = False
        s.opened_at = now
        s.last_cb = now
        s.resampler = StreamResampler(o.rate_hz, PIPELINE_RATE_HZ, len(s.channels))
        s.fresh = True
        if s.ever_opened:
            self.reconnects += 1
            log.warning("audio %s %s is back after %.1f s", s.name, o.device.label(),
                        now - (s.lost_since or now))
        else:
            log.info("capturing %s %s at %d Hz", s.name, o.device.label(), o.rate_hz)
        s.ever_opened = True
        s.lost_since = None

    def _pump(self, queue: BlockQueue) -> None:
        """Move captured audio into the queue: resample, align, pad gaps, cut blocks."""
        while self._raw:
            slot, gen, data = self._raw.popleft()
            if gen != slot.gen or slot.resampler is None:
                continue
            self._audio_seen = True
            y = to_int16(slot.resampler.process(data))
            if slot.fresh and len(slot.parties) == 1:
                self._align_fresh(slot.parties[0], len(y))
            slot.fresh = False
            for col, party in enumerate(slot.parties):
                self._pend[party] = np.concatenate([self._pend[party], y[:, col]])
        if self._audio_seen:  # the clock starts with the first audio
            self._pad(self.clock())
        a, c = self._pend
        n = self._block
        while len(a) >= n and len(c) >= n:
            block = PartyBlock(self._emitted / PIPELINE_RATE_HZ, a[:n], c[:n])
            a, c = a[n:], c[n:]
            self._emitted += n
            self.blocks += 1
            queue.put_nowait(block)
        self._pend = [a, c]

    def _align_fresh(self, party: int, n_new: int) -> None:
        """A (re)opened device's first audio is "now": line it up with the other party."""
        lag = len(self._pend[1 - party]) - len(self._pend[party]) - n_new
        if lag > 0:
            self._pend[party] = np.concatenate([self._pend[party], np.zeros(lag, np.int16)])
            self.filled_samples[party] += lag

    def _pad(self, now: float) -> None:
        last = [max(s.last_cb for s in self._slots if party in s.parties)
                for party in (_AGENT, _CUSTOMER)]
        if now - max(last) > GAP_FILL_S:  # nothing arrives: silence at the wall clock's pace
            if self._fill_from is None:
                self._fill_from, self._fill_done = max(last), 0
                self.fills += 1
            n = int((now - self._fill_from) * PIPELINE_RATE_HZ) - self._fill_done
            if n > 0:
                self._fill_done += n
                for p in (_AGENT, _CUSTOMER):
                    self._pend[p] = np.concatenate([self._pend[p], np.zeros(n, np.int16)])
                    self.filled_samples[p] += n
            return
        self._fill_from = None
        lens = [len(p) for p in self._pend]
        for p, q in ((_AGENT, _CUSTOMER), (_CUSTOMER, _AGENT)):
            lag = lens[q] - lens[p]
            recent = now - last[p] < max(0.15, 4 * self.cfg.block_s)
            limit = max(0.15, 4 * self.cfg.block_s) if recent else GAP_FILL_S
            if lag > limit * PIPELINE_RATE_HZ or (self._filling[p] and lag > 0 and not recent):
                if not self._filling[p]:
                    self.fills += 1
                    self._filling[p] = True
                self._pend[p] = np.concatenate([self._pend[p], np.zeros(lag, np.int16)])
                self.filled_samples[p] += lag
            elif recent:
                self._filling[p] = False
