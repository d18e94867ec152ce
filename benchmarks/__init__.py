"""Benchmarks for cookiesync: sync ingest and reconnect sweep, as ratios against
limits measured in the same run. Entry point: ``python -m benchmarks.run``."""
