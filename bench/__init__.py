"""Benchmarks and fault scenarios for rchat: ``make bench`` and ``make faults``.

Every figure is a ratio against a baseline measured in the same run, on the same
server, database and broker (docs/performance.md).
"""
