"""`make bench`: measure the app as it runs, write bench/results.json and docs/performance.md.

The fake gateway (stamped tokens at 25 tokens/s) and Daphne run as child processes; the
websocket clients and the SDK-alone floor run in processes of their own; this process sets
up data, reads /proc and writes the report. See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# `python bench/run.py` puts bench/ first on sys.path; the project root is needed instead.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.orchestrate import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--repetitions", type=int, default=3, help="runs per latency/start point (median)"
    )
    parser.add_argument(
        "--floor-repetitions", type=int, default=2, help="SDK-alone runs per point (median)"
    )
    parser.add_argument(
        "--budget", type=float, default=570, help="seconds for the whole run (bounds the search)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated scenarios, e.g. latency,start (development)"
    )
    args = parser.parse_args()
    sys.exit(main(args, time.monotonic()))
