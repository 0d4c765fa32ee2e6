"""`resdet submit`: validate result files and package them for the evaluation servers.

COCO test-dev::

    resdet submit --results coco_results.json --annotations image_info_test-dev2017.json \\
        --name NAME --out DIR

checks every entry (known image id, valid category id, finite box with w, h >= 0, score in
[0, 1]) and writes ``DIR/detections_test-dev2017_NAME_results.json`` and its ``.zip``.

VOC2012 test::

    resdet submit --voc-results DIR --name NAME --out DIR [--voc-root VOCdevkit/VOC2012]

checks every ``comp4_det_test_<class>.txt`` (image ids too, given ``--voc-root``) and writes
``DIR/voc2012_test_NAME_results.tar.gz`` holding ``results/VOC2012/Main/comp4_det_test_*.txt``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

from engine.errors import UserError
from tools.arguments import parse_class_names

_NAME = re.compile(r"[A-Za-z0-9-]+")  # the servers split file names on "_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", required=True, help="method name in the file names ([A-Za-z0-9-])"
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    coco = parser.add_argument_group("COCO")
    coco.add_argument("--results", help="COCO results JSON to submit")
    coco.add_argument("--annotations", help="image info JSON of the test set")
    coco.add_argument(
        "--test-set", default="test-dev2017", help="test set in the file name (test-dev2017)"
    )
    voc = parser.add_argument_group("VOC")
    voc.add_argument("--voc-results", help="folder of comp4_det_test_<class>.txt files")
    voc.add_argument("--voc-root", help="VOC2012 folder: check image ids against its test split")
    voc.add_argument("--classes", help="comma-separated class list (default: the 20 VOC classes)")


def run(args: argparse.Namespace) -> int:
    if not _NAME.fullmatch(args.name):
        raise UserError(f"--name: use letters, digits and '-' only, got {args.name!r}")
    if (args.voc_results is None) == (args.results is None):
        raise UserError("give exactly one of --results (COCO) or --voc-results (VOC)")
    out = _submit_voc(args) if args.voc_results is not None else _submit_coco(args)
    for path in out:
        print(f"wrote {path}")
    return 0


def _submit_coco(args: argparse.Namespace) -> list[Path]:
    from detection.data.coco import read_coco_json
    from detection.evaluation.results import load_coco_results

    if args.annotations is None:
        raise UserError("--annotations (the test set's image info JSON) is required with --results")
    dataset = read_coco_json(args.annotations)
    image_ids = {image["id"] for image in dataset["images"]}
    category_ids = {category["id"] for category in dataset["categories"]}
    entries = load_coco_results(args.results, image_ids, category_ids, strict=True)
    covered = len({e["image_id"] for e in entries})
    if covered < len(image_ids):
        print(
            f"resdet submit: {len(image_ids) - covered} images have no detection", file=sys.stderr
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"detections_{args.test_set}_{args.name}_results"
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(entries))
    zip_path = out / f"{stem}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(json_path, arcname=json_path.name)
    return [json_path, zip_path]


def _submit_voc(args: argparse.Namespace) -> list[Path]:
    from detection.data.voc import read_split_file
    from detection.evaluation.results import find_voc_result_files, package_voc_results

    class_names = parse_class_names(args.classes)
    known = None
    if args.voc_root is not None:
        known = set(read_split_file(str(Path(args.voc_root) / "ImageSets/Main/test.txt")))
    present = find_voc_result_files(args.voc_results, "test", class_names)
    missing = [n for n in class_names if n not in present]
    if missing:
        print(f"resdet submit: no result file for {', '.join(missing)}", file=sys.stderr)
    tar_path = Path(args.out) / f"voc2012_test_{args.name}_results.tar.gz"
    package_voc_results(args.voc_results, tar_path, class_names, known)
    return [tar_path]
