"""The order of the run and its time budget. Each scenario is independent: one that fails
is recorded as an error and the others still run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import environment, inprocess, live, long_conversation, report
from bench.procs import ROOT, VAR, start_gateway

RESULTS = ROOT / "bench" / "results.json"
# Seconds kept for what runs after the capacity search: SDK floor, writes, idle sockets.
RESERVED_AFTER_SEARCH = 190.0


def log(text: str) -> None:
    print(text, flush=True)


def machine() -> dict[str, Any]:
    meminfo = dict(
        line.split(":", 1) for line in open("/proc/meminfo").read().splitlines() if ":" in line
    )
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            ),
            "",
        ),
        "memory_total": meminfo.get("MemTotal", "").strip(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "debug": os.environ.get("DEBUG", ""),
    }


APP_DIRS = ("chatsite", "conversations", "templates")


def code_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the app files that differ from it."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return run.stdout

    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "uncommitted": git("status", "--porcelain", "--", *APP_DIRS).splitlines(),
    }


def app_mtimes() -> dict[str, float]:
    return {
        str(path): path.stat().st_mtime
        for folder in APP_DIRS
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def attempt(results: dict[str, Any], name: str, run: Callable[[], Any]) -> Any:
    """Run one scenario; record its result, or its error, under `name`."""
    log(f"== {name}")
    t0 = time.monotonic()
    try:
        results[name] = run()
    except Exception as exc:
        results.setdefault("errors", {})[name] = "".join(traceback.format_exception(exc))[-3000:]
        log(f"   FAILED: {exc!r}")
    results.setdefault("scenario_seconds", {})[name] = round(time.monotonic() - t0, 1)
    return results.get(name)


def scale_out(repetitions: int) -> dict[str, Any]:
    """The scale-out rows, in a process of their own (Django on PostgreSQL there)."""
    out = VAR / "scaleout.json"
    out.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-m", "bench.scaleout", str(out), str(repetitions)],
        cwd=ROOT,
        check=True,
        timeout=1800,
    )
    return json.loads(out.read_text())


def live_render() -> dict[str, Any]:
    """The browser rows, in a process of their own (Playwright drives Chromium there)."""
    out = VAR / "render.json"
    out.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-m", "bench.render", str(out)], cwd=ROOT, check=True, timeout=900
    )
    return json.loads(out.read_text())


def main(args: argparse.Namespace, started: float) -> int:
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    def wanted(name: str) -> bool:
        return not only or name in only

    env = environment.prepare_environment()
    environment.setup_django()
    mtimes = app_mtimes()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "code": code_state(),
        "machine": machine(),
        "config": {
            "token_delay_s": live.TOKEN_DELAY,
            "reply_tokens": live.REPLY_TOKENS,
            "stagger_s": live.STAGGER,
            "repetitions": args.repetitions,
            "floor_repetitions": args.floor_repetitions,
            "budget_s": args.budget,
            "database": "SQLite (fresh file under var/bench/), in-memory channel layer",
        },
    }
    gateway = start_gateway(env, live.TOKEN_DELAY)
    bench_user = environment.make_user("bench")
    environment.give_key(bench_user, f"http://127.0.0.1:{gateway.port}")
    ctx = live.Live(
        env=env,
        user=bench_user,
        cookie=environment.session_cookie(bench_user),
        gateway=gateway,
        log=log,
    )
    try:
        if wanted("replay"):
            attempt(results, "history_replay", inprocess.history_replay)
        if wanted("lists"):
            attempt(results, "lists", inprocess.lists_and_search)
        if wanted("open"):
            attempt(results, "open_long", inprocess.open_long)
        if wanted("long"):
            attempt(results, "long_conversation", long_conversation.long_conversation)
        if only & {"latency", "start", "capacity", "cpu"} or not only:
            ctx.serve("chatsite.asgi:application", "daphne")
            ctx.warm_up()
            results["daphne_idle"] = live.idle_cpu(ctx)
        if wanted("latency") or wanted("cpu") or wanted("capacity"):
            attempt(results, "relay_latency", lambda: live.relay_latency(ctx, args.repetitions))
        if wanted("start"):
            attempt(results, "start_delay", lambda: live.start_delay(ctx, args.repetitions))
        if wanted("capacity") and "relay_latency" in results:
            deadline = started + args.budget - RESERVED_AFTER_SEARCH
            attempt(results, "capacity", lambda: live.capacity(ctx, deadline))
        ctx.stop()
        if wanted("cpu") and "relay_latency" in results:
            attempt(
                results,
                "cpu_per_token",
                lambda: live.cpu_against_floor(
                    ctx, results["relay_latency"], args.floor_repetitions
                ),
            )
        if wanted("writes"):
            attempt(results, "writes_per_reply", lambda: live.writes_per_reply(ctx))
        if wanted("idle"):
            attempt(results, "idle_sockets", lambda: live.idle_sockets(ctx))
        if wanted("scaleout"):
            attempt(results, "scale_out", lambda: scale_out(args.repetitions))
        if wanted("render"):
            attempt(results, "live_render", live_render)
    finally:
        ctx.stop()
        gateway.stop()
    results["runtime_seconds"] = round(time.monotonic() - started, 1)
    # Servers started later in the run import the code as it is then: say so if it moved.
    changed = sorted(p for p, t in app_mtimes().items() if mtimes.get(p) != t)
    if changed:
        results["code"]["changed_during_run"] = [str(Path(p).relative_to(ROOT)) for p in changed]
        log(f"WARNING: app code changed during the run: {changed}")
    if only and RESULTS.exists():
        # A partial run (development, or one new scenario): the other scenarios keep the
        # figures of the last full run, and the report says which run each comes from.
        previous = json.loads(RESULTS.read_text())
        kept = {
            k: v
            for k, v in previous.items()
            if k not in results
            and k not in ("partial", "errors")
            # The note of when a scenario was measured alone goes when it is measured again.
            and k.removesuffix("_measured") not in results
        }
        results = {
            **kept,
            **results,
            "partial": {
                "scenarios": sorted(only),
                "others_from": previous.get("partial", {}).get("others_from")
                or previous.get("started_at"),
            },
        }
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = report.write(results)
    log("")
    log(table)
    log(f"\nRuntime {results['runtime_seconds']} s on {results['machine']['cpu_count']} cores.")
    log(f"Wrote {RESULTS.relative_to(ROOT)}, docs/performance.md, docs/perf-*.svg")
    return 1 if results.get("errors") else 0
