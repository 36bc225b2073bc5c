"""`make bench`: the performance benchmarks (see docs/performance.md)."""
