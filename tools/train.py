"""`resdet train`: train a Faster R-CNN detector from a config.

    resdet train --config configs/detection/faster_rcnn_r101_c4_voc0712.yaml [--set k=v ...]
    resdet train --config C --resume          # continue from output_dir/last_checkpoint
    resdet train --config C --nproc auto     # data-parallel ranks on this machine
    torchrun --nproc-per-node 8 --no-python resdet train --config C

`solver.ims_per_batch` and `solver.base_lr` are global, as in Detectron2: with fewer GPUs keep
them (each process then takes a larger share), or scale both linearly, e.g. for half the
images per iteration: --set solver.ims_per_batch=8 solver.base_lr=0.01 and double
solver.max_iter and solver.steps (see docs/REPRODUCE.md).
"""

from __future__ import annotations

import argparse

from detection.config import load_config
from tools.arguments import (
    add_config_arguments,
    add_nproc_argument,
    add_resume_arguments,
    add_trust_weights_argument,
    launched_ranks,
    print_json,
    trusted,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/quickstart.yaml")
    add_resume_arguments(parser)
    add_trust_weights_argument(parser)
    add_nproc_argument(parser)


def run(args: argparse.Namespace) -> int:
    cfg = trusted(load_config(args.config, args.overrides), args)
    code = launched_ranks(args, cfg.solver.ims_per_batch, cfg.device)
    if code is not None:
        return code
    # imported here (and not by a launcher): the engine pulls in albumentations and OpenCV
    from detection.task import headline, train_detector

    final = train_detector(cfg, resume=args.resume, restart=args.restart)
    print_json({"output_dir": cfg.output_dir, **headline(final.get("eval", {}))})
    return 0
