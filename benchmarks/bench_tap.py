"""The whole PBX tap over loopback: how many concurrent calls one box carries.

    python -m benchmarks.bench_tap [--calls 20,50,80,100] [--seconds 40] [--loss 0.01]
                                   [--workers N] [--asr] [--ports 16]

For each load a real :class:`~appliance.service.tap_service.TapService` runs in this
process — its RTP listener, the :class:`~appliance.audio.tap.TapCalls`, the worker
processes, the event bus, the floor board and the store's recorder (the store off) — and a
**sender in another process** streams N two-party calls to it at real-time pace: each call
two RTP streams (agent µ-law PT 0, customer A-law PT 8, 20 ms packets) with their own
SSRC, mapped statically to (call, party) and spread over ``--ports`` UDP ports, as an SBC
fork does.  ``--loss`` drops that share of packets at random in the sender (concealed and
counted by the box).  Every call is the bundled demo call started at a different offset.

Reported per load: whether the box keeps up (the workers' trail, pinged every second:
< 0.5 s), the interruption cue's lateness after its defining moment (demo ground truth
14.97 s of call audio, measured from the call's ``call_started``: p50/p95), the workers'
CPU per call-second and the parent's (listener + bus), peak memory per worker and of the
parent, packets received/lost/concealed as the listener counts them, and blocks the
workers could not take.  ``--asr`` turns recognition on with the Korean test model (the
stand-in: no other language's model is installable here) and reports how many calls'
recognizers kept up (no audio dropped) and the words per call.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
PACKET = 160  # 20 ms at 8 kHz
T_DEF_INTERRUPTION_S = 14.97
KEEP_UP_S = 0.5
BASE_PORT = 41000


def _ulaw(x: np.ndarray) -> bytes:
    """G.711 µ-law (the ITU table's segments), vectorised."""
    s = x.astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    mag = np.minimum(np.abs(s), 32635) + 0x84
    exp = np.floor(np.log2(mag)).astype(np.int32) - 7
    mant = (mag >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8).tobytes()


def _alaw(x: np.ndarray) -> bytes:
    s = x.astype(np.int32) >> 3
    sign = np.where(s >= 0, 0x80, 0)
    mag = np.minimum(np.abs(s), 4095)
    exp = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mant = np.where(exp == 0, mag >> 1, mag >> exp) & 0x0F
    return ((sign | (exp << 4) | mant) ^ 0x55).astype(np.uint8).tobytes()


def demo_legs_8k() -> tuple[np.ndarray, np.ndarray]:
    import soxr

    from appliance.audio.filesource import FileSource

    blocks = list(FileSource(DEMO).blocks())
    out = []
    for leg in ("agent", "customer"):
        x = np.concatenate([getattr(b, leg) for b in blocks]).astype(np.float32) / 32768
        y = soxr.resample(x, 16000, 8000)
        out.append(np.clip(np.round(y * 32768), -32768, 32767).astype(np.int16))
    return out[0], out[1]


def _sender(n_calls: int, seconds: float, loss: float, ports: int, go: Any,
            result: Any) -> None:
    """The PBX side, in its own process: N calls' two legs at real-time pace."""
    from appliance.audio.rtp.packet import build

    agent, customer = demo_legs_8k()
    n_pk = len(agent) // PACKET
    a_bytes, c_bytes = _ulaw(agent[:n_pk * PACKET]), _alaw(customer[:n_pk * PACKET])
    rng = np.random.default_rng(n_calls)
    offsets = [int(rng.uniform(0, n_pk - 1)) for _ in range(n_calls)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    go.wait()
    start = time.monotonic()
    sent = dropped = 0
    k = 0
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) / 0.02)
        while k < due:
            for c in range(n_calls):
                i = (offsets[c] + k) % n_pk
                for leg, (pt, data) in enumerate(((0, a_bytes), (8, c_bytes))):
                    ssrc = 1000 + 2 * c + leg
                    if loss and rng.random() < loss:
                        dropped += 1
                        continue
                    pkt = build(pt, k & 0xFFFF, (k * PACKET) & 0xFFFFFFFF, ssrc,
                                data[i * PACKET:(i + 1) * PACKET], marker=k == 0)
                    sock.sendto(pkt, ("127.0.0.1", BASE_PORT + (2 * c + leg) % ports))
                    sent += 1
            k += 1
        time.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
    result.put({"sent": sent, "dropped_by_sender": dropped, "offsets": offsets,
                "demo_s": n_pk * 0.02, "cpu_s": time.process_time()})


def _config(n_calls: int, ports: int, asr: bool, models: Path | None) -> Any:
    from appliance.config import config_from_dict

    streams = [{"port": BASE_PORT + (2 * c + leg) % ports, "ssrc": 1000 + 2 * c + leg,
                "call_id": f"c{c}", "party": ("agent", "customer")[leg],
                "agent_id": f"agent-{c}"}
               for c in range(n_calls) for leg in (0, 1)]
    raw: dict[str, Any] = {
        "language": "ko" if asr else "en",
        "asr": {"enabled": asr, **({"models_dir": str(models)} if models else {})},
        "words": {"transcript": asr},  # to count the words (in memory; the store is off)
        "storage": {"summaries": False},
        "tap": {"enabled": True, "idle_timeout_s": 30.0,
                "websocket": {"enabled": False},
                "rtp": {"enabled": True, "ports": [f"{BASE_PORT}-{BASE_PORT + ports - 1}"],
                        "streams": streams, "stream_timeout_s": 10.0}}}
    return config_from_dict(raw)


async def run_load(n_calls: int, seconds: float, loss: float, ports: int, workers: int | None,
                   asr: bool, models: Path | None) -> dict[str, Any]:
    from appliance.events import CallStarted, Cue, TranscriptEvent
    from appliance.service.tap_service import TapService

    cfg = _config(n_calls, ports, asr, models)
    svc = TapService(cfg, processes=workers, port=0)
    started: dict[str, float] = {}
    late: list[tuple[str, float, float]] = []
    words: dict[str, int] = {}

    def watch(ev: Any) -> None:
        if isinstance(ev, CallStarted):
            started[ev.call_id] = time.monotonic()
        elif isinstance(ev, Cue) and ev.kind == "interruption":
            late.append((ev.call_id, ev.t_s, time.monotonic()))
        elif isinstance(ev, TranscriptEvent):  # the words of each utterance (never kept)
            words[ev.call_id] = words.get(ev.call_id, 0) + len(ev.text.split())

    svc.bus.subscribe(watch)
    await svc.start()
    ctx = mp.get_context("spawn")
    go, result = ctx.Event(), ctx.Queue()
    sender = ctx.Process(target=_sender, args=(n_calls, seconds, loss, ports, go, result))
    sender.start()
    await asyncio.sleep(1.0)  # the sender has loaded its audio
    cpu_w0 = sum(s.get("cpu_s", 0.0) for s in svc.pool.stats())
    cpu0 = time.process_time()
    go.set()
    t0 = time.monotonic()
    worst = 0.0
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1.0)
        worst = max([worst, *await svc.pool.ping()])
    sent = await asyncio.to_thread(result.get, True, 60)
    sender.join(10)
    final = max(await svc.pool.ping())
    cpu_workers = sum(s.get("cpu_s", 0.0) for s in svc.pool.stats()) - cpu_w0
    cpu_parent = time.process_time() - cpu0
    stats = svc.pool.stats()
    rtp = svc.listeners["rtp"].stats()
    asr_drops = sum(s.get("asr_dropped_agent", 0) + s.get("asr_dropped_customer", 0)
                    for s in stats)
    await svc.stop()
    lates = []
    for call_id, t_s, arrived in late:
        # the call started at its offset into the demo, which wraps around
        t_def = (T_DEF_INTERRUPTION_S - sent["offsets"][int(call_id[1:])] * 0.02) \
            % sent["demo_s"]
        if call_id in started and abs(t_s - t_def) < 1.0:
            lates.append(arrived - (started[call_id] + t_def))
    return {
        "calls": n_calls, "keeps_up": max(worst, final) < KEEP_UP_S,
        "trail_s": max(worst, final),
        "late_p50": float(np.percentile(lates, 50)) if lates else None,
        "late_p95": float(np.percentile(lates, 95)) if lates else None,
        "n_late": len(lates),
        "rtf_workers_per_call": cpu_workers / (n_calls * seconds),
        "rtf_parent": cpu_parent / seconds, "rtf_sender": sent["cpu_s"] / seconds,
        "rss_worker_mib": max(s.get("rss_peak_mib", 0.0) for s in stats),
        "rss_parent_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sent": sent["sent"], "lost_in_sender": sent["dropped_by_sender"], "rtp": rtp,
        "tap_dropped_blocks": svc.tap.dropped_blocks, "asr_dropped": asr_drops,
        "words_per_call": (sum(words.values()) / n_calls) if asr else None,
        "calls_with_words": len(words),
    }


def _korean_models() -> Path:
    """The Korean test model installed into a temporary models folder, as a site would."""
    from appliance.cli.app import main
    from benchmarks.bench_asr import model_path

    d = Path(tempfile.mkdtemp(prefix="bench-tap-models-"))
    if main(["models", "--models-dir", str(d), "install", str(model_path()),
             "--lang", "ko"]) != 0:
        raise SystemExit("could not install the Korean test model")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="20,50,80,100")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--ports", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--asr", action="store_true")
    args = ap.parse_args()
    models = _korean_models() if args.asr else None
    print(f"{'calls':>5} {'keeps up':>8} {'trail':>6} {'late p50':>8} {'late p95':>8} "
          f"{'cpu/call':>8} {'parent':>6} {'MiB/wkr':>7} {'MiB par':>7} {'lost':>6} "
          f"{'concealed':>9} {'dropped':>7}" + ("  asr-drops words/call calls-w/words"
                                                  if args.asr else ""))
    for n in (int(x) for x in args.calls.split(",")):
        r = asyncio.run(run_load(n, args.seconds, args.loss, args.ports, args.workers,
                                 args.asr, models))

        def f(v: float | None, w: int = 8) -> str:
            return f"{v:{w}.2f}" if v is not None else " " * (w - 1) + "-"

        rtp = r["rtp"]
        line = (f"{r['calls']:5d} {('yes' if r['keeps_up'] else 'NO'):>8} "
                f"{r['trail_s']:6.2f} {f(r['late_p50'])} {f(r['late_p95'])} "
                f"{r['rtf_workers_per_call']:8.4f} {r['rtf_parent']:6.2f} "
                f"{r['rss_worker_mib']:7.0f} {r['rss_parent_mib']:7.0f} "
                f"{r['lost_in_sender']:6d} {rtp.get('concealed', rtp.get('lost', 0)):>9} "
                f"{r['tap_dropped_blocks']:7d}")
        if args.asr:
            line += (f"  {r['asr_dropped']:9d} {f(r['words_per_call'], 10)} "
                     f"{r['calls_with_words']:5d}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
