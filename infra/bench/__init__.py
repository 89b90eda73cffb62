"""``make bench``: r2r measured against its performance floors (not part of ``make test``).

Each section module (``coldstart``, ``throughput``, ``erp_volume``, ``spike``, ``cost``) exposes
``run(ctx: BenchContext) -> list[Figure]``; ``python -m infra.bench`` runs them in order, writes
``.r2r/bench/results.json`` and prints a table of every figure beside its target.
"""
