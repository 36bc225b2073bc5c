"""One A/B run for a fork against the framework's way: the three figures that decide it.

`python -m bench.ab OUT.json` (from the tree under test, so its code is what Daphne serves):
a fresh Daphne on a fresh database, warmed up as `make bench` warms it, then

- 100 streams of relay latency (`live.stream_once`): Daphne CPU per delivered token and
  added latency p99 (titles included: the CPU window waits for them);
- 100 simultaneous sends (`live.start_delay`'s job): start delay p50 and max.

Run it in two trees in turn (A, B, A, B, …) and compare medians: docs/performance.md,
round 4. The rest of `make bench` is left out so that alternating runs stay short.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench import environment, live
from bench.orchestrate import code_state, log
from bench.procs import start_gateway

STREAMS = 100
SENDS = 100


def main(out: Path) -> None:
    env = environment.prepare_environment()
    environment.setup_django()
    gateway = start_gateway(env, live.TOKEN_DELAY)
    user = environment.make_user("bench")
    environment.give_key(user, f"http://127.0.0.1:{gateway.port}")
    ctx = live.Live(
        env=env, user=user, cookie=environment.session_cookie(user), gateway=gateway, log=log
    )
    try:
        ctx.serve("chatsite.asgi:application", "daphne")
        ctx.warm_up()
        stream = live.stream_once(ctx, STREAMS)
        start = ctx.drive(ctx.client_job("start", SENDS, 5))
    finally:
        ctx.stop()
        gateway.stop()
    result = {
        "at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "code": code_state(),
        "cpu_us_per_token_100": round(stream["daphne_cpu_per_token_us"], 1),
        "p99_ms_100": stream["latency_ms"]["p99"],
        "p50_ms_100": stream["latency_ms"]["p50"],
        "delivered_100": stream["delivered_fraction"],
        "start_p50_ms_100": round(start["start_delay_ms"]["p50"], 1),
        "start_max_ms_100": round(start["start_delay_ms"]["max"], 1),
        "started_100": start["started"],
    }
    log(json.dumps(result))
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
