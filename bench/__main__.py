"""Runs the benchmarks in sequence, each with its default parameters.

    .venv/bin/python -m bench                      # run, lag, rebuild, dialog
    .venv/bin/python -m bench kb                   # the knowledge base's (see below)
    .venv/bin/python -m bench lag rebuild          # only these, in this order

With GB_TEST_DATABASE_URL and GB_TEST_KAFKA_BOOTSTRAP set (as for the test suite, e.g. from
`scripts/services up postgres` / `scripts/services up kafka`), bench.lag and bench.rebuild
include their PostgreSQL / Kafka parts; otherwise they say that they skip them. run, lag,
rebuild and dialog take about 2.5 minutes; kb (the knowledge base's quality evaluation, latency
and ingestion rate) runs only when named: several minutes, tens on its first run, which
downloads and embeds its corpus; with GB_BENCH_OPENSEARCH set it includes the OpenSearch profile.

For a benchmark's own options run it alone: `python -m bench.run --help`,
`python -m bench.lag --help`, `python -m bench.rebuild --help`, `python -m bench.dialog --help`,
`python -m bench.kb --help` (e.g. `python -m bench.kb --quick` for a smoke run).
The exit status is the first non-zero status of the benchmarks run (each runs even if an earlier
one failed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from bench import dialog, kb, lag, rebuild, run

BENCHMARKS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "run": run.main,
    "lag": lag.main,
    "rebuild": rebuild.main,
    "dialog": dialog.main,
    "kb": kb.main,
}
# Run when no name is given: kb is left out (it downloads a corpus from Debian and embeds it on
# its first run: tens of minutes); name it to run it.
DEFAULT = ("run", "lag", "rebuild", "dialog")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench", description="Run the gbserver benchmarks in sequence."
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run, in order: {', '.join(BENCHMARKS)}"
        f" (default: {', '.join(DEFAULT)})",
    )
    names = parser.parse_args(argv).names or list(DEFAULT)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    status = 0
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        code = BENCHMARKS[name]([])
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
