"""The file source of the pipeline: WAV file(s) -> 16 kHz int16 agent/customer blocks.

Either one multi-channel file with a channel map (default: channel 0 = agent, 1 = customer)
or two files, one per party (``--agent A.wav --customer C.wav``), each decoded and resampled on
its own; the shorter party is padded with zeros to the longer one's length.  A path of ``-``
(standard input), a pipe or a FIFO is read as a stream, block by block.  Everything is
validated at construction time, so errors come before any processing starts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.audio.resample import StreamResampler, expected_length, to_int16
from appliance.audio.wavfile import STDIN, WavReader, open_wav
from appliance.errors import INPUT_BAD_CHANNEL, INPUT_MISMATCH, ApplianceError
from appliance.stream.blocks import PIPELINE_RATE_HZ, PartyBlock

logger = logging.getLogger(__name__)

#: Two-file inputs whose lengths differ by more than this get a warning.
LENGTH_MISMATCH_WARN_S = 0.5

_EMPTY = np.zeros(0, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class _Input:
    reader: WavReader
    channels: tuple[int, ...]  # which channels of the file to deliver, in order

    @property
    def out_samples(self) -> int:
        info = self.reader.info
        return expected_length(info.n_frames, info.sample_rate_hz, PIPELINE_RATE_HZ)


class FileSource:
    """Reads a call from WAV file(s) and yields :class:`PartyBlock` s of ~``block_s`` seconds."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        agent_channel: int = 0,
        customer_channel: int = 1,
        agent_path: Path | None = None,
        customer_path: Path | None = None,
        block_s: float = 0.1,
    ) -> None:
        if not (math.isfinite(block_s) and block_s > 0):
            raise ValueError(f"block_s must be a positive number of seconds, got {block_s}")
        self.block_s = block_s
        self._block_samples = max(1, round(block_s * PIPELINE_RATE_HZ))
        two_files = agent_path is not None or customer_path is not None
        if path is not None and two_files:
            raise ApplianceError(
                INPUT_MISMATCH,
                "give either one two-channel call file or --agent and --customer files, not both",
            )
        if path is None and not two_files:
            raise ApplianceError(
                INPUT_MISMATCH,
                "no input given: give a two-channel call file or --agent and --customer files",
            )
        if path is not None:
            self._inputs: tuple[_Input, ...] = (
                self._open_single(Path(path), agent_channel, customer_channel),
            )
        else:
            if agent_path is None or customer_path is None:
                given, missing = (
                    ("--agent", "--customer")
                    if customer_path is None
                    else ("--customer", "--agent")
                )
                raise ApplianceError(
                    INPUT_MISMATCH, f"{given} was given without {missing}; give both files"
                )
            self._inputs = self._open_pair(Path(agent_path), Path(customer_path))

    @staticmethod
    def _open_single(path: Path, agent_channel: int, customer_channel: int) -> _Input:
        reader = open_wav(path)
        n = reader.info.channels
        if n == 1:
            raise ApplianceError(
                INPUT_BAD_CHANNEL,
                f"{path}: is mono (1 channel), but one call file must hold the agent and the "
                "customer on separate channels; for two mono recordings use "
                "--agent AGENT.wav --customer CUSTOMER.wav",
            )
        for role, ch in (("agent", agent_channel), ("customer", customer_channel)):
            if not 0 <= ch < n:
                raise ApplianceError(
                    INPUT_BAD_CHANNEL,
                    f"{path}: has {n} channels (0-{n - 1}), so the {role} channel {ch} does "
                    f"not exist; pick a channel between 0 and {n - 1}",
                )
        if agent_channel == customer_channel:
            raise ApplianceError(
                INPUT_BAD_CHANNEL,
                f"{path}: agent and customer are both mapped to channel {agent_channel}; "
                "they must be different channels",
            )
        return _Input(reader, (agent_channel, customer_channel))

    @staticmethod
    def _open_pair(agent_path: Path, customer_path: Path) -> tuple[_Input, _Input]:
        if str(agent_path) == STDIN and str(customer_path) == STDIN:
            raise ApplianceError(INPUT_MISMATCH, "only one of --agent and --customer can be "
                                 "standard input (-)")
        if agent_path.resolve() == customer_path.resolve():
            logger.warning("the agent and the customer file are the same file: %s", agent_path)
        inputs = []
        for role, p in (("agent", agent_path), ("customer", customer_path)):
            reader = open_wav(p)
            if reader.info.channels > 1:
                logger.warning(
                    "%s: the %s file has %d channels; using channel 0 only",
                    p,
                    role,
                    reader.info.channels,
                )
            inputs.append(_Input(reader, (0,)))
        agent, customer = inputs
        diff_s = abs(agent.reader.info.duration_s - customer.reader.info.duration_s)
        streams = agent.reader.info.stream or customer.reader.info.stream
        if diff_s > LENGTH_MISMATCH_WARN_S and not streams:
            logger.warning(
                "agent file %s (%.2f s) and customer file %s (%.2f s) differ by %.2f s; "
                "the shorter one is padded with silence",
                agent_path,
                agent.reader.info.duration_s,
                customer_path,
                customer.reader.info.duration_s,
                diff_s,
            )
        return agent, customer

    @property
    def sample_rate_hz(self) -> int:
        """Sample rate of the input (of the agent's file for a two-file input)."""
        return self._inputs[0].reader.info.sample_rate_hz

    @property
    def input_rates_hz(self) -> tuple[int, int]:
        """(agent, customer) input sample rates."""
        rates = [i.reader.info.sample_rate_hz for i in self._inputs]
        return (rates[0], rates[-1])

    @property
    def duration_s(self) -> float:
        """Total call duration from the header(s): the longer party for two files; 0.0 when
        it is not known in advance (a stream without a declared size)."""
        return max(i.reader.info.duration_s for i in self._inputs)

    @property
    def n_samples(self) -> int:
        """Total number of 16 kHz samples :meth:`blocks` will deliver per party."""
        return max(i.out_samples for i in self._inputs)

    def blocks(self) -> Iterator[PartyBlock]:
        """Yield 16 kHz int16 blocks in order, ``block_s`` long (the last may be shorter)."""
        pairs: Iterator[tuple[np.ndarray, np.ndarray]]
        if len(self._inputs) == 1:
            pairs = ((y[:, 0], y[:, 1]) for y in self._resampled(self._inputs[0]))
        else:
            agent, customer = self._inputs
            pairs = _zip_padded(self._resampled(agent), self._resampled(customer))
        size = self._block_samples
        pend_a, pend_c = _EMPTY, _EMPTY
        emitted = 0
        for a, c in pairs:
            pend_a, pend_c = np.concatenate([pend_a, a]), np.concatenate([pend_c, c])
            while len(pend_a) >= size:
                yield PartyBlock(emitted / PIPELINE_RATE_HZ, pend_a[:size], pend_c[:size])
                pend_a, pend_c = pend_a[size:], pend_c[size:]
                emitted += size
        if len(pend_a):
            yield PartyBlock(emitted / PIPELINE_RATE_HZ, pend_a, pend_c)

    def _resampled(self, inp: _Input) -> Iterator[np.ndarray]:
        """int16 arrays of shape (n, len(inp.channels)) at the pipeline rate."""
        info = inp.reader.info
        resampler = StreamResampler(info.sample_rate_hz, PIPELINE_RATE_HZ, len(inp.channels))
        block_frames = max(1, math.ceil(self.block_s * info.sample_rate_hz))
        cols = list(inp.channels)
        for block in inp.reader.read_blocks(block_frames):
            y = resampler.process(block[:, cols])
            if len(y):
                yield to_int16(y)
        yield to_int16(resampler.process(np.zeros((0, len(cols)), np.float32), last=True))


def _zip_padded(
    agent: Iterator[np.ndarray], customer: Iterator[np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Align two mono streams of (n, 1) int16 chunks; the one that ends first is zero-padded."""
    its = (agent, customer)
    pend = [_EMPTY, _EMPTY]
    live = [True, True]
    while live[0] or live[1]:
        i = min((k for k in (0, 1) if live[k]), key=lambda k: len(pend[k]))
        chunk = next(its[i], None)
        if chunk is None:
            live[i] = False
        else:
            pend[i] = np.concatenate([pend[i], chunk[:, 0]])
        limits = [len(pend[k]) for k in (0, 1) if live[k]]
        n = min(limits) if limits else max(len(pend[0]), len(pend[1]))
        if n:
            out = []
            for k in (0, 1):
                p = pend[k]
                out.append(
                    p[:n] if len(p) >= n else np.concatenate([p, np.zeros(n - len(p), np.int16)])
                )
                pend[k] = p[n:]
            yield out[0], out[1]
