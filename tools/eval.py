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
prints the per-class table and the headline numbers (mAP@.5 and mAP@[.5,.95]).
"""

from __future__ import annotations

import argparse
from typing import Any

from detection.config import load_config
from engine.errors import UserError
from tools.arguments import add_config_arguments, config_path, is_main_process


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


def member_argument(text: str) -> tuple[str, str]:
    """``CONFIG=WEIGHTS`` -> (config path, weights path)."""
    config, sep, weights = text.partition("=")
    if not sep or not config or not weights:
        raise argparse.ArgumentTypeError(f"expected CONFIG=WEIGHTS, got {text!r}")
    return config_path(config), weights


def run(args: argparse.Namespace) -> int:
    from detection.modeling.build import check_member_config
    from detection.train import evaluate_weights, headline

    if not args.members:
        raise UserError("resdet eval needs --weights FILE (or --member CONFIG=WEIGHTS)")
    cfg = load_config(args.config, args.overrides)
    configs = {}
    for path, weights in args.members:
        if path is not None:
            configs[weights] = load_config(path, args.overrides)
            check_member_config(cfg, configs[weights], path)
    single = len(args.members) == 1 and not configs
    weights = args.members[0][1] if single else [w for _, w in args.members]
    results = evaluate_weights(cfg, weights, configs)
    if is_main_process():
        print(render(results, headline(results)))
        print(f"results written to {cfg.output_dir}/eval_results.json")
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
    per_class = {
        m: {
            name: (v["AP"] if isinstance(v, dict) else v)
            for name, v in results[m].get("per_class", {}).items()
        }
        for m in columns
    }
    names = list(next(iter(per_class.values()), {}))
    labels = {"voc07": "AP50 % (VOC07)", "voc": "AP50 % (VOC)", "coco": "AP % (COCO)"}
    rows = [[name, *(_pct(per_class[m].get(name)) for m in columns)] for name in names]
    return ["class", *(labels[m] for m in columns)], rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}"
