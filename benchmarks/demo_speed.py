"""Whole `resdet demo` runs, this checkout against another, quiet and beside one busy process.

    python benchmarks/demo_speed.py --baseline /tmp/old [--rounds 2] [--busy-rounds 1]

``--baseline`` is another checkout of resdet (``git worktree add /tmp/old <commit>``). Both
run with this interpreter, each from its own folder (``python -m tools.cli demo``, so each runs
its own code and configs), the baseline first within each round. The quiet rounds come first,
then the busy ones, with a one-thread Python spin loop beside the demo (``--busy``, as in
benchmarks/contention.py). A run's time is the wall time of the whole command: data, pretraining,
training, evaluation and drawing, start-ups included. Prints every run (time, mAP@.5,
mAP@[.5,.95], the load average at its end), then a markdown table of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._machine import machine_description
from benchmarks.contention import BUSY

HERE = Path(__file__).resolve().parents[1]


def run_demo(checkout: Path, work: Path) -> tuple[float, dict[str, float]]:
    """``resdet demo`` of ``checkout`` into ``work``; returns (wall seconds, its headline)."""
    command = [sys.executable, "-m", "tools.cli", "demo", "--data", str(work / "data"),
               "--output", str(work / "out")]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=checkout, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - start
    results = json.loads((work / "out" / "detector" / "eval_results.json").read_text())
    return seconds, results["headline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another resdet checkout")
    parser.add_argument("--rounds", type=int, default=2, help="quiet rounds")
    parser.add_argument("--busy-rounds", type=int, default=1, help="rounds beside a busy process")
    parser.add_argument("--busy", choices=sorted(BUSY), default="python")
    args = parser.parse_args()
    sides = {"baseline": args.baseline.resolve(), "this": HERE}
    times: dict[tuple[str, str], list[float]] = {}
    scores: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="resdet-demo-speed-") as work:
        for load, rounds in (("quiet", args.rounds), ("busy", args.busy_rounds)):
            for r in range(rounds):
                for side, checkout in sides.items():
                    spinner = None
                    if load == "busy":
                        spinner = subprocess.Popen([sys.executable, "-c", BUSY[args.busy]])
                        time.sleep(1.0)
                    try:
                        seconds, head = run_demo(checkout, Path(work) / f"{load}_{side}_{r}")
                    finally:
                        if spinner is not None:
                            spinner.kill()
                            spinner.wait()
                    times.setdefault((side, load), []).append(seconds)
                    scores.setdefault((side, load), []).append(head["mAP@.5"])
                    print(f"{load} round {r + 1} {side}: {seconds / 60:.2f} min, mAP@.5 "
                          f"{head['mAP@.5']:.3f}, mAP@[.5,.95] {head['mAP@[.5,.95]']:.3f}, "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    print(f"\n{machine_description()}; busy process: {args.busy}; medians of "
          f"{args.rounds} quiet / {args.busy_rounds} busy rounds\n")  # fmt: skip
    print("| checkout | quiet min | busy min | busy speed / quiet speed | mAP@.5 quiet | "
          "mAP@.5 busy |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for side, checkout in sides.items():
        quiet, busy = (_median(times, side, load) for load in ("quiet", "busy"))
        q_map, b_map = (_median(scores, side, load) for load in ("quiet", "busy"))
        print(f"| {side} ({checkout}) | {quiet / 60:.2f} | {busy / 60:.2f} | {quiet / busy:.2f} "
              f"| {q_map:.3f} | {b_map:.3f} |")  # fmt: skip


def _median(values: dict[tuple[str, str], list[float]], side: str, load: str) -> float:
    """The median of a side's runs under a load; NaN where none ran (``--busy-rounds 0``)."""
    runs = values.get((side, load), [])
    return statistics.median(runs) if runs else float("nan")


if __name__ == "__main__":
    main()
