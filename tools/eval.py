"""`resdet eval`: evaluate a detector checkpoint, or an ensemble, on the config's test split.

    resdet eval --config C --weights output/run/model_final.pth [--set k=v ...]
    resdet eval --config C --weights A.pth --weights B.pth [--member VGG.yaml=V.pth ...]

Several --weights / --member evaluate their ensemble (detection/modeling/ensemble.py): a
--weights member is built from C, a --member CONFIG=WEIGHTS member from its own CONFIG (with
the same --set overrides); members must agree with C on the test input and the classes.
The ensemble's data, input, RoIs (test.ensemble_proposals: the members' whole union, or its
NMS) and selection (test.*) are C's. eval_results.json's "weights" is then the list.

Writes eval_results.json, coco_results.json (with the coco metric) and the VOC devkit files
(voc_results/comp4_det_<split>_<class>.txt, with a VOC metric) into the config's output_dir,
prints the per-class table and the headline numbers (mAP@.5 and mAP@[.5,.95]). Results
already in output_dir (a training run's, an earlier evaluation's) are kept: the new ones then
go to output_dir/eval/<UTC time>/, and the last line says where. An output_dir a run is
training in (its lock is live) is refused. Weights files that need full unpickling are read
only with --trust-weights (never from a config file).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from detection.config import load_config
from engine.errors import UserError
from engine.io import is_json_number
from tools.arguments import (
    add_config_arguments,
    add_runtime_argument,
    add_trust_weights_argument,
    config_path,
    is_main_process,
    trusted,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/faster_rcnn_r101_c4_voc0712.yaml")
    parser.add_argument(
        "--weights", dest="members", action="append", type=lambda w: (None, w), default=[],
        metavar="FILE",
        help="detector checkpoint (model_final.pth); repeat it for an ensemble of --config's",
    )  # fmt: skip
    parser.add_argument(
        "--member", dest="members", action="append", type=member_argument, metavar="CONFIG=WEIGHTS",
        help="an ensemble member built from its own CONFIG (another architecture, say; --set "
        "applies to it too)",
    )  # fmt: skip
    add_runtime_argument(parser)
    add_trust_weights_argument(parser)


def member_argument(text: str) -> tuple[str, str]:
    """``CONFIG=WEIGHTS`` -> (config path, weights path)."""
    config, sep, weights = text.partition("=")
    if not sep or not config or not weights:
        raise argparse.ArgumentTypeError(f"expected CONFIG=WEIGHTS, got {text!r}")
    return config_path(config), weights


def run(args: argparse.Namespace) -> int:
    from detection.modeling.build import check_member_config
    from detection.task import evaluate_weights, headline

    if not args.members:
        raise UserError("resdet eval needs --weights FILE (or --member CONFIG=WEIGHTS)")
    cfg = trusted(load_config(args.config, args.overrides), args)
    if args.runtime != "torch":  # the exported graph runs on the CPU
        cfg.device = "cpu"
    configs = {}
    for path, weights in args.members:
        if path is not None:
            configs[weights] = trusted(load_config(path, args.overrides), args)
            check_member_config(cfg, configs[weights], path)
    single = len(args.members) == 1 and not configs
    weights = args.members[0][1] if single else [w for _, w in args.members]
    asked = cfg.output_dir
    # may move cfg.output_dir (kept results)
    results = evaluate_weights(cfg, weights, configs, args.runtime)
    if is_main_process():
        print(render(results, headline(results)))
        kept = f" ({asked} holds earlier results: kept)" if cfg.output_dir != asked else ""
        print(f"results written to {cfg.output_dir}/eval_results.json{kept}")
    return 0


def render(results: dict[str, Any], heads: dict[str, float]) -> str:
    """The per-class AP table (one column per metric) and the headline numbers."""
    header, rows = ap_table(results)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    lines += [f"{key}: {_pct(value)}%" for key, value in heads.items()]
    return "\n".join(lines)


def ap_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the per-class AP table: a class column, then one column (in
    percent) per metric of ``results`` (voc07, voc, coco; ``eval_results.json``'s metrics)."""
    columns = [m for m in ("voc07", "voc", "coco") if results.get(m)]
    per_class = {m: _per_class_ap(results[m]) for m in columns}
    names = list(next(iter(per_class.values()), {}))
    labels = {"voc07": "AP50 % (VOC07)", "voc": "AP50 % (VOC)", "coco": "AP % (COCO)"}
    rows = [[name, *(_pct(per_class[m].get(name)) for m in columns)] for name in names]
    return ["class", *(labels[m] for m in columns)], rows


def _per_class_ap(metric: dict[str, Any]) -> dict[str, object]:
    """Class name -> AP of one metric's results (COCO's per class entries are objects)."""
    entries = metric.get("per_class")
    if not isinstance(entries, dict):
        return {}
    return {str(k): (v.get("AP") if isinstance(v, dict) else v) for k, v in entries.items()}


def _pct(value: object) -> str:
    """``12.3`` for a fraction; n/a for null, NaN (no test objects) or a non-number."""
    if not is_json_number(value) or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}"
