"""Benchmark the hft-ext matching engine and write the figures into docs/benchmarks.md.

In one run, on the standard workload (``shared/bench/workload.py``, 300,000 operations, seed 1):
the compiled engine, the interpreted engine, and NautilusTrader's Rust L3 order book replaying
the same flow (``nautilus_book.py``); then the memory held per resting order at 1,000,000 resting
orders. Each measurement runs in its own process, rounds interleave the three so that drift on a
shared machine hits them alike, and each figure is the fastest replay seen. Every result is
checked against the workload's own summary (fills, quantity, live orders, book checksum).

Run it with a Python that has hft, a compiled hft-ext and nautilus-trader installed (the bench
venv, never the dev venv)::

    python hft_ext/bench/run_bench.py [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_WORKLOAD_PY = REPO.parent / "shared" / "bench" / "workload.py"
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Matching engine (hft-ext)"

TARGET_OPS_PER_S = 4_000_000
TARGET_VS_INTERPRETED = 2.0
TARGET_VS_NAUTILUS = 1.5


def load_workload(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("shared_workload", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["shared_workload"] = module
    spec.loader.exec_module(module)
    return module


def run_json(argv: list[str]) -> dict[str, Any]:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()} "
        f"(load average {load} when the run finished)"
    )


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: float(r["seconds"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload-py", type=Path, default=DEFAULT_WORKLOAD_PY)
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-orders", type=int, default=1_000_000)
    parser.add_argument("--out-dir", type=Path, default=REPO / "hft_ext" / "build" / "bench")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()

    import hft_ext

    if not hft_ext.COMPILED:
        raise SystemExit("hft-ext is the pure build here: install the compiled build to benchmark")
    if not args.workload_py.is_file():
        raise SystemExit(f"no workload generator at {args.workload_py} (use --workload-py)")

    workload = load_workload(args.workload_py)
    ops, summary, _ = workload.generate(args.n, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ops_file = args.out_dir / f"oflow1-{args.n}-seed{args.seed}.bin"
    workload.save_bin(ops, str(ops_file))
    expected = {
        "n_fills": summary.n_fills,
        "live_orders": summary.live_orders,
        "checksum": summary.checksum,
    }

    py = sys.executable
    bench = [py, "-m", "hft_ext._cli", "matching", "--workload", str(ops_file), "--json"]
    nautilus = [
        py,
        str(HERE / "nautilus_book.py"),
        "--workload-py",
        str(args.workload_py),
        "--n",
        str(args.n),
        "--seed",
        str(args.seed),
        "--json",
    ]
    runs: dict[str, list[dict[str, Any]]] = {"compiled": [], "interpreted": [], "nautilus": []}
    for round_ in range(1, args.rounds + 1):
        runs["compiled"].append(run_json([*bench, "--repeat", "5"]))
        runs["interpreted"].append(run_json([*bench, "--interpreted", "--repeat", "2"]))
        runs["nautilus"].append(run_json([*nautilus, "--repeat", "3"]))
        shown = ", ".join(f"{k} {v[-1]['ops_per_s'] / 1e6:.2f}M" for k, v in runs.items())
        print(f"round {round_}: {shown} ops/s", file=sys.stderr)

    results = {name: best(r) for name, r in runs.items()}
    for name, result in results.items():
        got = {key: result[key] for key in expected}
        if got != expected:
            raise SystemExit(f"{name} disagrees with the workload: {got} != {expected}")
        if name != "nautilus" and result["filled_qty"] != summary.filled_qty:
            raise SystemExit(f"{name}: filled_qty {result['filled_qty']} != {summary.filled_qty}")
    memory = {
        name: run_json(
            [py, "-m", "hft_ext._cli", "matching-memory", "--orders", str(args.memory_orders)]
            + ["--json"]
            + (["--interpreted"] if name == "interpreted" else [])
        )
        for name in ("compiled", "interpreted")
    }

    text = render(args, results, runs, memory, hft_ext.describe())
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote the '{SECTION}' section of {DOCS}", file=sys.stderr)
    return 0


def render(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    memory: dict[str, dict[str, Any]],
    build: str,
) -> str:
    compiled = results["compiled"]["ops_per_s"]
    interpreted = results["interpreted"]["ops_per_s"]
    nautilus = results["nautilus"]["ops_per_s"]
    vs_interpreted = compiled / interpreted
    vs_nautilus = compiled / nautilus

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        SECTION,
        "",
        "Standard workload: `shared/bench/workload.py --n "
        f"{args.n} --seed {args.seed}` (OFLOW1; 55% passive adds, 30% cancels, 10% crossing "
        "limits, 5% market orders). Each engine is called from a plain Python loop; hft-ext "
        "takes one call per operation, Nautilus's book one `simulate_fills` per taker plus one "
        "`add`/`update`/`delete` per book change (its `BookOrder`s built before the clock "
        "starts). Figures are the fastest replay of "
        f"{args.rounds} interleaved rounds, each process replaying on fresh books; every engine's "
        "final book matched the workload's checksum and fill count.",
        "",
        "| engine | ops/s | seconds | fills | live orders | checksum |",
        "|---|---:|---:|---:|---:|---|",
    ]
    names = {
        "compiled": "hft-ext, compiled (mypyc)",
        "interpreted": "hft-ext, interpreted",
        "nautilus": results["nautilus"]["engine"],
    }
    for key, name in names.items():
        r = results[key]
        lines.append(
            f"| {name} | {r['ops_per_s']:,.0f} | {r['seconds']:.4f} | {r['n_fills']:,} | "
            f"{r['live_orders']:,} | `{r['checksum']}` |"
        )
    lines += [
        "",
        "Each round's best, in ops/s (the spread is other work on the shared cores):",
        "",
        "| round | compiled | interpreted | Nautilus | ÷ interpreted | ÷ Nautilus |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (c, p, n) in enumerate(
        zip(runs["compiled"], runs["interpreted"], runs["nautilus"], strict=True), 1
    ):
        lines.append(
            f"| {i} | {c['ops_per_s']:,.0f} | {p['ops_per_s']:,.0f} | {n['ops_per_s']:,.0f} | "
            f"{c['ops_per_s'] / p['ops_per_s']:.1f}× | {c['ops_per_s'] / n['ops_per_s']:.2f}× |"
        )
    lines += [
        "",
        "| target (fastest replays of the run) | measured | |",
        "|---|---:|---|",
        f"| compiled ≥ {TARGET_OPS_PER_S / 1e6:.0f},000,000 ops/s | {compiled:,.0f} | "
        f"{verdict(compiled >= TARGET_OPS_PER_S)} |",
        f"| compiled ≥ {TARGET_VS_INTERPRETED:g}× interpreted | {vs_interpreted:.1f}× | "
        f"{verdict(vs_interpreted >= TARGET_VS_INTERPRETED)} |",
        f"| compiled ≥ {TARGET_VS_NAUTILUS:g}× NautilusTrader's book | {vs_nautilus:.2f}× | "
        f"{verdict(vs_nautilus >= TARGET_VS_NAUTILUS)} |",
        "",
        f"Memory with {args.memory_orders:,} resting orders (500 price levels a side; "
        "tracemalloc, everything the engine holds): "
        f"compiled {memory['compiled']['bytes_per_order']:.0f} bytes per resting order, "
        f"interpreted {memory['interpreted']['bytes_per_order']:.0f}.",
        "",
        f"Machine: {machine()}; Python {platform.python_version()}; hft-ext "
        f"{version('hft-ext')}, {build}; nautilus-trader "
        f"{version('nautilus-trader')}.",
        "",
        "Command (from the repository root, in a venv holding hft, the compiled hft-ext and "
        "nautilus-trader):",
        "",
        "    python hft_ext/bench/run_bench.py",
        "",
        "One engine alone: `hft bench matching --workload FILE [--json] [--interpreted]` "
        "(or `python -m hft_ext._cli matching ...`).",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace this section of docs/benchmarks.md (or add it), leaving the others alone."""
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(updated.rstrip("\n") + "\n")


if __name__ == "__main__":
    sys.exit(main())
