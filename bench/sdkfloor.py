"""The CPU floor: the same streams consumed by the SDK alone, nothing done with the events.

Run as `python -m bench.sdkfloor JOB.json` (see `procs.Worker`). Whatever the app does per
token, it must at least parse the gateway's server-sent events with this SDK; this process
does only that, so its CPU per token is the cost the app cannot go below.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import anthropic


def say(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def consume(client: anthropic.AsyncAnthropic, job: dict[str, Any], delay: float) -> int:
    """One streamed reply; returns its number of text deltas (one per token here)."""
    await asyncio.sleep(delay)
    stream = await client.messages.create(
        model=job["model"],
        max_tokens=1024,
        messages=[{"role": "user", "content": job["content"]}],
        stream=True,
    )
    tokens = 0
    async for event in stream:
        # Counting is the only work done, so the delivered-token figure is known.
        if event.type == "content_block_delta":
            tokens += 1
    return tokens


async def main(job: dict[str, Any]) -> None:
    client = anthropic.AsyncAnthropic(
        auth_token="bench-floor", base_url=job["gateway_url"], max_retries=0
    )
    # The SDK imports its resources lazily and opens a connection on first use; Daphne
    # paid that in its warm-up too, so pay it here before the measured window.
    await consume(client, {**job, "content": "[[fake words=2 token_delay=0]]"}, 0.0)
    say({"ready": True})
    await asyncio.to_thread(sys.stdin.readline)
    wall0 = time.monotonic()
    delays = [random.uniform(0, job["stagger"]) for _ in range(job["streams"])]
    counts = await asyncio.gather(
        *(consume(client, job, d) for d in delays), return_exceptions=True
    )
    tokens = sum(c for c in counts if isinstance(c, int))
    errors = [repr(c) for c in counts if not isinstance(c, int)][:5]
    say({"tokens": tokens, "wall_seconds": time.monotonic() - wall0, "errors": errors})
    await asyncio.to_thread(sys.stdin.read)
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
