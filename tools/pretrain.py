"""`resdet pretrain`: train or evaluate a classification backbone (ImageNet, CIFAR-10).

    resdet pretrain --config configs/pretrain/resnet50_imagenet.yaml [--set k=v ...] [--resume]
    resdet pretrain --config C --eval-only --weights W
    resdet pretrain --config C --nproc auto  # data-parallel ranks on this machine
    torchrun --nproc-per-node 8 --no-python resdet pretrain --config C

Outputs in the config's output_dir: config.yaml, metrics.jsonl, checkpoint_<iter>.pth,
last_checkpoint, model_final.pth, backbone.pth (for model.backbone.weights) and
eval_results.json (top-1/top-5 error per test mode). See docs/REPRODUCE.md for the paper's runs.
--eval-only keeps results already in output_dir (they stay; the new ones go to
output_dir/eval/<UTC time>/). Weights files that need full unpickling are read only with
--trust-weights (never from a config file).
"""

from __future__ import annotations

import argparse
import sys

from backbones.pretrain.config import load_config
from engine.errors import UserError
from tools.arguments import (
    add_config_arguments,
    add_nproc_argument,
    add_resume_arguments,
    add_trust_weights_argument,
    is_main_process,
    launched_ranks,
    print_json,
    trusted,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/pretrain/resnet50_imagenet.yaml")
    add_resume_arguments(parser)
    parser.add_argument(
        "--eval-only", action="store_true", help="only evaluate --weights on the test split"
    )
    parser.add_argument(
        "--weights",
        help="with --eval-only: ours, or a torchvision / MSRA / pytorch_resnet_cifar10 file",
    )
    add_trust_weights_argument(parser)
    add_nproc_argument(parser)


def run(args: argparse.Namespace) -> int:
    # imported here: the engine pulls in torch, albumentations and OpenCV
    from backbones.pretrain.task import evaluate_weights, pretrain

    cfg = trusted(load_config(args.config, args.overrides), args)
    if args.eval_only:
        if not args.weights:
            raise UserError("--eval-only needs --weights FILE")
        if args.nproc is not None:
            raise UserError("--nproc goes with training; --eval-only runs in this process")
        asked = cfg.output_dir
        print_json(evaluate_weights(cfg, args.weights))  # may move cfg.output_dir (kept results)
        if cfg.output_dir != asked and is_main_process():
            print(f"resdet pretrain: {asked} holds earlier results (kept); these went to "
                  f"{cfg.output_dir}", file=sys.stderr)  # fmt: skip
        return 0
    if args.weights:
        raise UserError(
            "--weights goes with --eval-only; to start training from weights, "
            "--set model.backbone.weights=FILE"
        )
    code = launched_ranks(args, cfg.solver.ims_per_batch, cfg.device)
    if code is not None:
        return code
    final = pretrain(cfg, resume=args.resume, restart=args.restart)
    print_json({"output_dir": cfg.output_dir, "eval": final.get("eval", {})})
    return 0
