"""Benchmarks (not tests). Run: .venv/bin/python -m bench.run --help"""
