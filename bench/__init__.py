"""Benchmarks (not tests). Run from the repository root:

.venv/bin/python -m bench                # all of them in sequence (see bench/__main__.py)
.venv/bin/python -m bench.run --help     # HTTP req/s vs a bare Litestar baseline
.venv/bin/python -m bench.lag --help     # projection lag vs one SELECT
.venv/bin/python -m bench.rebuild --help # rebuild events/s vs raw log reads
"""
