"""Training and inference beside a busy process: quiet vs one busy core, before vs after.

    python benchmarks/contention.py [--config configs/detection/quickstart.yaml] \
        [--iters 60] [--rounds 3] [--busy python|matmul]

Runs the real commands as a user would, on a generated shapes data set with the backbone
pretrained as `resdet demo` pretrains it (once, first): ``resdet train`` (``--iters``
iterations of the config) and ``resdet eval`` of that model on the test split, in four
settings, alternating within each round:

- **before**: ``OMP_NUM_THREADS`` = the usable cores (torch's own default, what resdet did
  until the thread count followed the load);
- **after**: nothing set, so the commands choose the threads from the load
  (``engine.threads``);
- each of them **quiet** and beside **one busy process** (``--busy python``: a one-thread
  Python spin loop, like a browser tab at work; ``matmul``: a one-thread torch matmul loop,
  which also takes memory bandwidth).

Training speed is the median seconds per iteration from ``metrics.jsonl`` (the first 20
iterations left out: loader start and warm-up), so start-up is not counted; evaluation is the
wall time of the whole ``resdet eval`` command. Prints a markdown table: medians over the
rounds, and the busy/quiet ratio of each mode (the target: after keeps >= 80% of quiet).
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
from engine.threads import usable_cores

BUSY = {
    "python": "while True: pass",
    "matmul": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
    "while True: a = (a @ a).clamp_(-1, 1)",
}
SKIP = 20  # first iterations left out of the training median
PRETRAIN = "configs/pretrain/shapes_demo.yaml"


def resdet(*args: str, env: dict[str, str]) -> float:
    """Run ``resdet args`` to its end; returns the wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tools.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def seconds_per_iteration(run_dir: Path) -> float:
    """Median ``time`` of the iterations after the first ``SKIP`` (log_period 1)."""
    times = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("iter", 0) > SKIP and "time" in record:
            times.append(record["time"])
    return statistics.median(times)


def environment(mode: str, cores: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if mode == "before":
        env["OMP_NUM_THREADS"] = str(cores)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/detection/quickstart.yaml")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", choices=sorted(BUSY), default="python")
    parser.add_argument("--images", type=int, default=200, help="generated shapes images")
    args = parser.parse_args()
    cores = usable_cores()
    work = Path(tempfile.mkdtemp(prefix="resdet-contention-"))
    data = work / "shapes"
    env0 = environment("after", cores)
    resdet("make-dataset", "--format", "voc", "--out", str(data), "--num-images",
           str(args.images), "--seed", "0", "--crops", env=env0)  # fmt: skip
    backbone = work / "pretrain"  # as `resdet demo`: the detector starts from these crops
    resdet("pretrain", "--config", PRETRAIN, "--set", f"output_dir={backbone}",
           f"data.train.root={data}/crops", f"data.test.root={data}/crops", env=env0)  # fmt: skip
    common = [
        f"data.train.root={data}/VOC2007", f"data.test.root={data}/VOC2007",
        f"model.backbone.weights={backbone}/backbone.pth", f"solver.max_iter={args.iters}",
        "log_period=1",
        "solver.checkpoint_period=0", "test.eval_period=0", "test.metrics=[voc07]",
    ]  # fmt: skip
    train_times: dict[tuple[str, str], list[float]] = {}
    eval_times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for load in ("quiet", "busy"):
            spinner = None
            if load == "busy":
                spinner = subprocess.Popen([sys.executable, "-c", BUSY[args.busy]])
                time.sleep(1.0)
            try:
                for mode in ("before", "after"):
                    env, out = environment(mode, cores), work / f"{mode}_{load}"
                    resdet("train", "--config", args.config, "--restart", "--set",
                           f"output_dir={out}", *common, env=env)  # fmt: skip
                    train_times.setdefault((mode, load), []).append(seconds_per_iteration(out))
                    model = ["--config", str(out / "config.yaml"), "--weights",
                             str(out / "model_final.pth")]  # fmt: skip
                    seconds = resdet("eval", *model, env=env)
                    eval_times.setdefault((mode, load), []).append(seconds)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    batch = _images_per_batch(args.config)
    print(f"\n{machine_description()}; busy process: {args.busy}; {args.rounds} rounds, "
          f"{args.iters} training iterations each (median s/it after {SKIP}); "
          f"eval: wall time of the command\n")  # fmt: skip
    print("| mode | train img/s quiet | train img/s busy | busy/quiet | eval s quiet | "
          "eval s busy | quiet/busy |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in ("before", "after"):
        tq = batch / statistics.median(train_times[(mode, "quiet")])
        tb = batch / statistics.median(train_times[(mode, "busy")])
        eq = statistics.median(eval_times[(mode, "quiet")])
        eb = statistics.median(eval_times[(mode, "busy")])
        print(f"| {mode} | {tq:.1f} | {tb:.1f} | {tb / tq:.2f} | {eq:.1f} | {eb:.1f} | "
              f"{eq / eb:.2f} |")  # fmt: skip


def _images_per_batch(config: str) -> int:
    from detection.config import load_config

    return load_config(config).solver.ims_per_batch


if __name__ == "__main__":
    main()
