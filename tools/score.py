"""`resdet score`: evaluate saved result files without a model.

VOC (devkit result files ``comp4_det_<split>_<class>.txt`` in a folder)::

    resdet score --voc-root VOCdevkit/VOC2007 --split test --results DIR [--metric voc07|voc]

COCO (a results JSON against an annotation file)::

    resdet score --coco-annotations instances_val2017.json --results coco_results.json

``--json`` prints one JSON object: VOC ``{"mAP", "per_class": {name: AP}, "mAP@[.5:.95]"}``,
COCO the 12 COCOeval stats (``AP`` ... ``ARl``, fractions) plus ``per_class``; otherwise a
table. VOC classes are those with a result file in ``--results`` (names from the standard 20
VOC classes, or ``--classes a,b,c``); the mean is over those classes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.errors import UserError
from engine.io import json_safe
from tools.arguments import parse_class_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results", required=True, help="VOC: folder of comp4_det_* files; COCO: results JSON"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    voc = parser.add_argument_group("VOC")
    voc.add_argument("--voc-root", help="a VOC20xx folder (Annotations/, ImageSets/Main/)")
    voc.add_argument("--split", default="test", help="image set (default: test)")
    voc.add_argument(
        "--metric", choices=["voc07", "voc"], default="voc07", help="11-point or area AP"
    )
    voc.add_argument("--classes", help="comma-separated class list (default: the 20 VOC classes)")
    coco = parser.add_argument_group("COCO")
    coco.add_argument("--coco-annotations", help="COCO annotation JSON of the evaluated split")
    coco.add_argument(
        "--backend",
        choices=["faster", "pycocotools"],
        default="faster",
        help="faster-coco-eval (default) or the reference pycocotools",
    )


def run(args: argparse.Namespace) -> int:
    if (args.voc_root is None) == (args.coco_annotations is None):
        raise UserError("give exactly one of --voc-root (VOC) or --coco-annotations (COCO)")
    if args.voc_root is not None:
        summary, table = _score_voc(args)
    else:
        summary, table = _score_coco(args)
    # NaN (a class without objects) as null: strict JSON
    print(json.dumps(json_safe(summary), allow_nan=False) if args.json else table)
    return 0


def _score_voc(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from detection.data.voc import load_voc
    from detection.evaluation.results import find_voc_result_files, read_voc_results
    from detection.evaluation.voc import evaluate_voc

    class_names = parse_class_names(args.classes)
    present = list(find_voc_result_files(args.results, args.split, class_names))
    missing = [n for n in class_names if n not in present]
    if missing:
        print(f"resdet score: no result file for {', '.join(missing)}; not scored", file=sys.stderr)
    records = load_voc(args.voc_root, args.split, class_names)
    known = {str(r.image_id) for r in records}
    detections = read_voc_results(args.results, args.split, class_names, known)
    result = evaluate_voc(records, detections, class_names, args.metric, classes=present)
    title = {"voc07": "VOC07 11-point AP", "voc": "VOC2010+ area AP"}[args.metric]
    lines = [
        f"{title} (IoU > 0.5), {args.voc_root} {args.split}, {len(records)} images",
        f"{'class':<14}{'AP':>8}{'AP@[.5:.95]*':>15}",
    ]
    for name in present:
        ap, ap_coco = result.per_class[name], result.per_class_50_95[name]
        lines.append(f"{name:<14}{100 * ap:>8.2f}{100 * ap_coco:>15.2f}")
    lines.append(f"{'mean':<14}{100 * result.mAP:>8.2f}{100 * result.mAP_50_95:>15.2f}")
    lines.append("* VOC-style AP averaged over IoU 0.5:0.95 (not an official VOC number)")
    return result.to_dict(), "\n".join(lines)


def _score_coco(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from detection.data.coco import read_coco_json
    from detection.evaluation.coco import evaluate_coco
    from detection.evaluation.results import load_coco_results

    dataset = read_coco_json(args.coco_annotations)
    image_ids = {image["id"] for image in dataset["images"]}
    category_ids = {category["id"] for category in dataset["categories"]}
    entries = load_coco_results(args.results, image_ids, category_ids)
    result = evaluate_coco(dataset, entries, args.backend)
    labels = {
        "AP": "AP @[.50:.95] all",
        "AP50": "AP @.50 all",
        "AP75": "AP @.75 all",
        "APs": "AP small",
        "APm": "AP medium",
        "APl": "AP large",
        "AR1": "AR maxDets=1",
        "AR10": "AR maxDets=10",
        "AR100": "AR maxDets=100",
        "ARs": "AR small",
        "ARm": "AR medium",
        "ARl": "AR large",
    }
    lines = [f"COCO box evaluation ({args.backend}), {len(entries)} detections"]
    lines += [f"{labels[k]:<20}{v:>8.4f}  ({k})" for k, v in result.stats.items()]
    lines.append(f"\n{'category':<20}{'AP':>8}{'AP50':>8}")
    for name, row in result.per_class.items():
        lines.append(f"{name:<20}{100 * row['AP']:>8.2f}{100 * row['AP50']:>8.2f}")
    return result.to_dict(), "\n".join(lines)
