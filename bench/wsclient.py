"""Real websocket clients for `make bench`, in a process of their own.

Run as `python -m bench.wsclient JOB.json` by the orchestrator (see `procs.Worker`). Modes:

- `stream`: one socket per conversation; on "go" each sends one message (start times
  spread over `stagger` seconds so streams do not tick in lock-step) and records, for every
  token of every delta frame, arrival time minus the gateway's stamp in the token.
- `start`: every socket sends at the same moment; the start delay of a send is the stamp
  of its first token minus the moment just before `ws.send`.
- `idle`: open the sockets, report, and hold them until stdin closes.
- `soak`: open the sockets, hold them idle for `soak_seconds`, then count the ones the
  server closed and ask every open one a question (a `stop`, answered `nothing_to_stop`).

`ws_bases` (several servers) spreads the sockets over them in turn, as a proxy would.

Stamps are `time.monotonic_ns()` of the gateway process; CLOCK_MONOTONIC is one clock for
every process of a Linux machine, so the difference is a real duration.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.stats import summary

# Open sockets this many at a time: Twisted's listen backlog is 50.
CONNECT_BATCH = 50


@dataclass
class Stream:
    """What one socket saw of one reply."""

    latencies_us: list[int] = field(default_factory=list)
    # The gateway's stamp of each token, beside its latency: which phase of the run it is in.
    stamps_ns: list[int] = field(default_factory=list)
    tokens: int = 0
    frames: int = 0
    gaps: int = 0
    last_seq: int = 0
    status: str = "no_done"
    send_ns: int = 0
    first_stamp_ns: int | None = None
    done_ns: int | None = None
    content_tokens: int = 0
    error: str = ""


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def open_socket(job: dict[str, Any], conversation: str, index: int) -> ClientConnection:
    bases = job.get("ws_bases") or [job["ws_base"]]
    ws = await connect(
        f"{bases[index % len(bases)]}/ws/conversations/{conversation}/",
        origin=job["origin"],
        additional_headers={"Cookie": job["cookie"]},
        open_timeout=120,
        # Only 127.0.0.1 is involved: never consult proxy variables.
        proxy=None,
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 120))
    if first.get("type") != "state":
        raise RuntimeError(f"first frame was {first!r}, not state")
    return ws


async def open_all(job: dict[str, Any]) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []
    conversations = job["conversations"]
    for start in range(0, len(conversations), CONNECT_BATCH):
        batch = conversations[start : start + CONNECT_BATCH]
        sockets += await asyncio.gather(
            *(open_socket(job, c, start + i) for i, c in enumerate(batch))
        )
    return sockets


def record_delta(stream: Stream, frame: dict[str, Any], arrival_ns: int) -> None:
    stream.frames += 1
    seq = int(frame["seq"])
    if seq != stream.last_seq + 1:
        stream.gaps += 1
    stream.last_seq = seq
    # A frame may carry several coalesced tokens; each one counts with its own stamp.
    for stamp in frame["text"].split():
        stamp_ns = int(stamp)
        if stream.first_stamp_ns is None:
            stream.first_stamp_ns = stamp_ns
        stream.latencies_us.append((arrival_ns - stamp_ns) // 1000)
        stream.stamps_ns.append(stamp_ns)
        stream.tokens += 1


async def converse(ws: ClientConnection, content: str, delay: float, stream: Stream) -> None:
    """Send one message after `delay` seconds and read frames until the reply is done."""
    if delay:
        await asyncio.sleep(delay)
    stream.send_ns = time.monotonic_ns()
    await ws.send(json.dumps({"type": "send", "content": content}))
    while True:
        raw = await ws.recv()
        arrival_ns = time.monotonic_ns()
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "delta":
            record_delta(stream, frame, arrival_ns)
        elif kind == "done":
            stream.done_ns = arrival_ns
            stream.status = frame.get("status", "")
            stream.content_tokens = len((frame.get("content") or "").split())
            return
        elif kind == "error":
            stream.error = f"{frame.get('code')}: {frame.get('message')}"
            if not frame.get("message_id"):
                return


async def run_conversations(
    sockets: list[ClientConnection], job: dict[str, Any], stagger: float
) -> list[Stream]:
    streams = [Stream() for _ in sockets]
    delays = [random.uniform(0, stagger) if stagger else 0.0 for _ in sockets]
    tasks = [
        asyncio.create_task(converse(ws, job["content"], delay, stream))
        for ws, delay, stream in zip(sockets, delays, streams, strict=True)
    ]
    done, pending = await asyncio.wait(tasks, timeout=job["timeout"])
    for task in pending:
        task.cancel()
    for task, stream in zip(tasks, streams, strict=True):
        if task in done and task.exception() is not None:
            stream.error = repr(task.exception())
        elif task in pending:
            stream.error = stream.error or "timeout"
    return streams


def count_statuses(streams: list[Stream]) -> dict[str, int]:
    return dict(Counter(s.status for s in streams))


# Tokens stamped within this long after the last send or before the last token are the
# start and end bursts (every turn starting, then finishing and being titled, within a second).
BURST_NS = 2_000_000_000


def latencies_by_phase(streams: list[Stream]) -> dict[str, list[int]]:
    """Latencies of the tokens stamped in the start burst, while every stream was running
    (bursts excluded), and in the end burst."""
    phases: dict[str, list[int]] = {"start": [], "steady": [], "end": []}
    sends = [s.send_ns for s in streams if s.send_ns]
    stamps = [t for s in streams for t in s.stamps_ns]
    if not sends or not stamps:
        return phases
    start, end = max(sends) + BURST_NS, max(stamps) - BURST_NS
    for s in streams:
        for latency, stamp in zip(s.latencies_us, s.stamps_ns, strict=True):
            phase = "start" if stamp < start else "end" if stamp > end else "steady"
            phases[phase].append(latency)
    return phases


def stream_result(streams: list[Stream], job: dict[str, Any]) -> dict[str, Any]:
    latencies = [v for s in streams for v in s.latencies_us]
    phases = latencies_by_phase(streams)
    expected = job["tokens_per_reply"] * len(streams)
    delivered = sum(s.tokens for s in streams)
    durations = [
        (s.done_ns - s.send_ns) / 1e9 for s in streams if s.done_ns is not None and s.send_ns
    ]
    return {
        "streams": len(streams),
        "latency_ms": {
            k: (v / 1000 if isinstance(v, int | float) and k != "count" else v)
            for k, v in summary(latencies).items()
        },
        "steady_tokens": len(phases["steady"]),
        "p99_ms_by_phase": {
            phase: (summary(values)["p99"] / 1000 if values else None)
            for phase, values in phases.items()
        },
        "tokens_expected": expected,
        "tokens_delivered": delivered,
        "delivered_fraction": delivered / expected if expected else None,
        "frames": sum(s.frames for s in streams),
        "seq_gaps": sum(s.gaps for s in streams),
        "statuses": count_statuses(streams),
        "final_content_tokens_ok": sum(
            1 for s in streams if s.content_tokens == job["tokens_per_reply"]
        ),
        "reply_seconds_median": sorted(durations)[len(durations) // 2] if durations else None,
        "errors": [s.error for s in streams if s.error][:5],
    }


def start_result(streams: list[Stream]) -> dict[str, Any]:
    delays = [(s.first_stamp_ns - s.send_ns) / 1e6 for s in streams if s.first_stamp_ns is not None]
    return {
        "sends": len(streams),
        "started": len(delays),
        "start_delay_ms": {
            "p50": summary(delays)["p50"],
            "max": max(delays) if delays else None,
            "all": sorted(round(d, 2) for d in delays),
        },
        "statuses": count_statuses(streams),
        "errors": [s.error for s in streams if s.error][:5],
    }


async def soak(sockets: list[ClientConnection], seconds: float) -> dict[str, Any]:
    """Hold idle sockets, then see which the server closed and whether the rest answer."""
    await asyncio.sleep(seconds)
    closed = Counter(str(ws.close_code) for ws in sockets if ws.close_code is not None)

    async def answers(ws: ClientConnection) -> bool:
        try:
            await ws.send(json.dumps({"type": "stop"}))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except Exception:
            return False
        return frame.get("code") == "nothing_to_stop"

    answered = await asyncio.gather(*(answers(ws) for ws in sockets if ws.close_code is None))
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "sockets": len(sockets),
        "seconds": seconds,
        "closed_by_server": sum(closed.values()),
        "close_codes": dict(closed),
        "answered": sum(answered),
    }


def say(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def wait_for_go() -> str:
    return await asyncio.to_thread(sys.stdin.readline)


async def main(job: dict[str, Any]) -> None:
    raise_fd_limit(len(job["conversations"]) + 1024)
    opened = time.monotonic()
    sockets = await open_all(job)
    say({"ready": True, "sockets": len(sockets), "connect_seconds": time.monotonic() - opened})
    await wait_for_go()
    if job["mode"] == "idle":
        # Hold the sockets until the orchestrator has read the memory figure.
        await asyncio.to_thread(sys.stdin.read)
        return
    if job["mode"] == "soak":
        say(await soak(sockets, job["soak_seconds"]))
        return
    cpu0, wall0 = time.process_time(), time.monotonic()
    stagger = job.get("stagger", 0.0) if job["mode"] == "stream" else 0.0
    streams = await run_conversations(sockets, job, stagger)
    client = {"cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.monotonic() - wall0}
    result = stream_result(streams, job) if job["mode"] == "stream" else start_result(streams)
    say({**result, "client": client})
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
