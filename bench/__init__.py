"""Benchmarks: ``make bench`` (``python -m bench.run``); see README, section Benchmarks."""
