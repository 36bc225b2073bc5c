"""Scale-out rows: the same streams on one in-memory process and on two processes sharing
PostgreSQL and Redis (channels-redis's pub/sub layer, and its core layer for comparison),
plus a soak of idle sockets on Redis.

Runs as its own process (`python -m bench.scaleout OUT.json`, started by `bench.orchestrate`):
it needs Django set up on PostgreSQL, while the rest of the benchmark runs on SQLite.
Configurations are interleaved within each repetition, so a slow minute of this shared
machine spreads over all of them; the figures are medians of the repetitions.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import environment
from bench.live import REPLY_TOKENS, STAGGER, TOKEN_DELAY, directive, wait_for_titles
from bench.procs import Server, Worker, start_daphne, start_gateway
from bench.stats import median

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = "chat_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

# name -> (processes, environment of each). "memory": today's single process.
CONFIGS: dict[str, tuple[int, dict[str, str]]] = {
    "memory-1": (1, {"REDIS_URL": ""}),
    "pubsub-2": (2, {"REDIS_URL": REDIS_URL, "CHAT_CHANNEL_LAYER": "pubsub"}),
    "core-2": (2, {"REDIS_URL": REDIS_URL, "CHAT_CHANNEL_LAYER": "core"}),
}
STREAM_POINTS = {"memory-1": (100, 200), "pubsub-2": (100, 200), "core-2": (100,)}
START_SENDS = 100
SOAK_SOCKETS = 200
SOAK_SECONDS = 60.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fresh_database() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DATABASE}"


class Cluster:
    """One configuration's Daphne processes, and the job a client worker runs on them."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        count, extra = CONFIGS[name]
        self.name = name
        self.servers: list[Server] = [
            start_daphne({**env, **extra}, "chatsite.asgi:application", f"{name}-{i}")
            for i in range(count)
        ]

    def cpu(self) -> float:
        return sum(server.cpu() for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def job(self, mode: str, conversations: list[str], words: int, **extra: Any) -> dict[str, Any]:
        return {
            "mode": mode,
            "ws_bases": [f"ws://127.0.0.1:{s.port}" for s in self.servers],
            "origin": f"http://127.0.0.1:{self.servers[0].port}",
            "cookie": COOKIE,
            "conversations": conversations,
            "content": directive(words),
            "tokens_per_reply": words,
            "timeout": words * TOKEN_DELAY * 4 + 60,
            **extra,
        }


COOKIE = ""


def drive(cluster: Cluster, job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One client job; the CPU of every process of the cluster is read around it."""
    worker = Worker("bench.wsclient", job, env)
    try:
        worker.read(300)
        cpu0 = cluster.cpu()
        worker.go()
        result = worker.read(job["timeout"] + 60)
        result["title_wait_seconds"] = wait_for_titles(job)
        cpu1 = cluster.cpu()
    finally:
        worker.close()
    delivered = result.get("tokens_delivered", 0)
    result["cpu_seconds"] = round(cpu1 - cpu0, 3)
    result["cpu_per_token_us"] = (cpu1 - cpu0) / delivered * 1e6 if delivered else None
    return result


def main(out: Path, repetitions: int) -> None:
    global COOKIE
    env = environment.prepare_environment(database_url=fresh_database())
    env["REDIS_URL"] = ""
    environment.setup_django()
    user = environment.make_user("bench")
    COOKIE = environment.session_cookie(user)
    gateway = start_gateway(env, TOKEN_DELAY)
    environment.give_key(user, f"http://127.0.0.1:{gateway.port}")
    trials: dict[str, dict[int, list[dict[str, Any]]]] = {name: {} for name in CONFIGS}
    starts: dict[str, dict[str, Any]] = {}
    soak: dict[str, Any] = {}
    try:
        for rep in range(repetitions):
            for name in CONFIGS:
                cluster = Cluster(name, env)
                try:
                    # Imports, SDK clients and first connections, once per process.
                    drive(
                        cluster,
                        cluster.job("stream", environment.new_conversations(user, 4), 20),
                        env,
                    )
                    points = STREAM_POINTS[name] if rep == 0 else STREAM_POINTS[name][:1]
                    for streams in points:
                        job = cluster.job(
                            "stream",
                            environment.new_conversations(user, streams),
                            REPLY_TOKENS,
                            stagger=STAGGER,
                        )
                        result = drive(cluster, job, env)
                        trials[name].setdefault(streams, []).append(result)
                        log(
                            f"  {name} {streams} streams: p99 {result['latency_ms']['p99']} ms, "
                            f"delivered {result['delivered_fraction']:.4f}, "
                            f"{result['cpu_per_token_us'] or 0:.0f} µs/token, "
                            f"done {result['statuses']}"
                        )
                    if rep == 0:
                        job = cluster.job(
                            "start", environment.new_conversations(user, START_SENDS), 5
                        )
                        starts[name] = drive(cluster, job, env)["start_delay_ms"]
                        log(f"  {name} {START_SENDS} sends: start {starts[name]['p50']} ms p50")
                    if rep == 0 and name == "pubsub-2":
                        job = cluster.job(
                            "soak",
                            environment.new_conversations(user, SOAK_SOCKETS),
                            1,
                            soak_seconds=SOAK_SECONDS,
                        )
                        job["timeout"] = SOAK_SECONDS + 60
                        worker = Worker("bench.wsclient", job, env)
                        try:
                            worker.read(300)
                            worker.go()
                            soak = worker.read(SOAK_SECONDS + 120)
                        finally:
                            worker.close()
                        log(f"  soak: {soak}")
                finally:
                    cluster.stop()
    finally:
        gateway.stop()
    result = {
        "configs": {name: {"processes": CONFIGS[name][0]} for name in CONFIGS},
        "streams": {
            name: {str(n): aggregate(runs) for n, runs in points.items()}
            for name, points in trials.items()
        },
        "start_delay_ms": starts,
        "idle_soak": soak,
        "repetitions": repetitions,
    }
    out.write_text(json.dumps(result, indent=2, default=str))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "p50_ms": median([r["latency_ms"]["p50"] for r in runs]),
        "p99_ms": median([r["latency_ms"]["p99"] for r in runs]),
        "delivered_fraction": min(r["delivered_fraction"] or 0 for r in runs),
        "done": min(r["statuses"].get("complete", 0) for r in runs),
        "seq_gaps": sum(r["seq_gaps"] for r in runs),
        "cpu_per_token_us": median([r["cpu_per_token_us"] for r in runs]),
        "cpu_per_token_runs_us": [r["cpu_per_token_us"] for r in runs],
        "p99_runs_ms": [r["latency_ms"]["p99"] for r in runs],
    }


if __name__ == "__main__":
    started = time.monotonic()
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    log(f"scale-out rows in {time.monotonic() - started:.0f} s")
