"""`resdet benchmark NAME [ARGS...]`: run one of the scripts in benchmarks/.

    resdet benchmark data_loader --workers 0 2     # loader images/s, ours vs torchvision
    resdet benchmark eval_speed                    # VOC and COCO evaluation at full size
    resdet benchmark detector_speed                # our R50-FPN vs torchvision's, latency
    resdet benchmark train_step                    # one R50-FPN training step, vs torchvision
    resdet benchmark train_speed --config C        # training / inference img/s, peak memory

The scripts (benchmarks/) ship with the package, so this works from any folder; the
arguments after NAME go to the script (see `resdet benchmark NAME --help`).
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import benchmarks
from engine.errors import UserError

BENCHMARKS = Path(benchmarks.__file__).resolve().parent  # shipped with the package


def available() -> list[str]:
    return sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of: {', '.join(available()) or '(no checkout)'}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def run(args: argparse.Namespace) -> int:
    if args.name not in available():
        raise UserError(
            f"unknown benchmark {args.name!r}; expected one of: {', '.join(available())} "
            f"(scripts in {BENCHMARKS})"
        )
    script = BENCHMARKS / f"{args.name}.py"
    saved = sys.argv
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:  # argparse --help / errors inside the script
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    finally:
        sys.argv = saved
    return 0
