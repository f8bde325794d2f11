"""``hft bench``: the benchmark command hft-ext adds to the ``hft`` command line.

``hft bench matching --workload FILE [--json] [--interpreted] [--repeat N]`` replays an OFLOW1
order flow through the engine; ``hft bench matching-memory [--orders N]`` reports the bytes held
per resting order. ``python -m hft_ext._cli`` runs the same command without the host.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import attrs

__all__ = ["configure", "main", "run"]

HELP = "benchmark installed components (hft-ext: the matching engine)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` sub-commands to ``parser``."""
    targets = parser.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    matching = targets.add_parser(
        "matching",
        help="replay an OFLOW1 order flow through the hft-ext matching engine",
        description="Replay an OFLOW1 order flow (one engine call per operation) and report "
        "throughput and the final book's checksum.",
    )
    matching.add_argument("--workload", type=Path, required=True, help="OFLOW1 file to replay")
    matching.add_argument("--json", action="store_true", help="print one JSON object")
    matching.add_argument(
        "--interpreted",
        action="store_true",
        help="run the interpreted engine even when the compiled one is installed",
    )
    matching.add_argument(
        "--repeat", type=int, default=5, help="replays on fresh engines; the fastest counts"
    )
    memory = targets.add_parser(
        "matching-memory",
        help="bytes the hft-ext matching engine holds per resting order",
    )
    memory.add_argument("--orders", type=int, default=1_000_000, help="resting orders to hold")
    memory.add_argument("--json", action="store_true", help="print one JSON object")
    memory.add_argument("--interpreted", action="store_true", help="measure the interpreted engine")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command ``args`` names; return the exit code."""
    from hft_ext import COMPILED
    from hft_ext._bench import measure_resting_memory, run_matching

    if args.bench_target == "matching":
        try:
            result = run_matching(args.workload, interpreted=args.interpreted, repeat=args.repeat)
        except (OSError, ValueError) as exc:
            print(f"hft bench matching: {exc}", file=sys.stderr)
            return 2
        fields = attrs.asdict(result)
    else:
        per_order = measure_resting_memory(args.orders, interpreted=args.interpreted)
        fields = {
            "orders": args.orders,
            "bytes_per_order": round(per_order, 1),
            "compiled": COMPILED and not args.interpreted,
        }
    if args.json:
        print(json.dumps(fields))
    else:
        width = max(len(key) for key in fields)
        for key, value in fields.items():
            shown = f"{value:,.0f}" if key == "ops_per_s" else str(value)
            print(f"{key:<{width}}  {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``bench`` command on its own: ``python -m hft_ext._cli matching --workload F``."""
    parser = argparse.ArgumentParser(prog="hft bench", description=HELP)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
