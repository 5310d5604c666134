"""`make bench`: the portal's speed, measured side by side in one run (see docs/benchmarks.md)."""
