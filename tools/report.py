"""`resdet report RUN_DIR`: one self-contained HTML page about a detection run.

    resdet report output/raccoon [--out report.html] [--images 12] [--score-thresh 0.5]

Reads what the run wrote (``config.yaml``, ``metrics.jsonl``, ``eval_results.json``,
``pr_curves.json``, ``coco_results.json``) and its data sets, and writes ``report.html``
(default: in RUN_DIR): the config summary, data statistics (``resdet dataset-stats``),
training curves (``resdet plot``), the per-class AP table (``resdet eval``), the
precision-recall curves, and test images with their detections next to the ground truth,
worst first (most missed objects and false positives at ``--score-thresh``). Every image is
embedded (data: URIs): the file opens anywhere, without the run or a network.

No model runs when the run has ``coco_results.json``; without it the detections come from
``model_final.pth`` (one that needs full unpickling only with ``--trust-weights``). Without
``pr_curves.json`` (older runs) the curves are computed from the detections with the VOC code
evaluation uses. Paths in ``config.yaml`` (``data.*.root``)
are relative to the folder the run was trained from: run the report there, or ``--set`` them.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detection.config import Config, load_config
from detection.structures import Detections, ImageRecord
from engine.errors import UserError
from engine.io import atomic_write_text, encode_image, is_json_number, output_folder, read_json
from engine.runfolder import CONFIG_FILE, MODEL_FINAL, RunFolder
from tools.arguments import add_trust_weights_argument, fraction, non_negative_int

HELP = "write one self-contained HTML report of a detection run"
REPORT = "report.html"
THUMB_SIDE = 560  # gallery images are scaled so that their longer side is at most this
# the eval curves drawn (the losses and lr always are); the other COCO stats stay in the table
HEADLINE_METRICS = ("eval.voc07.mAP", "eval.voc.mAP", "eval.coco.AP", "eval.coco.AP50")
EVAL_HINT = "resdet eval --config RUN_DIR/config.yaml --weights RUN_DIR/model_final.pth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output_dir of a `resdet train` run")
    parser.add_argument("--out", metavar="FILE.html", help=f"default: RUN_DIR/{REPORT}")
    parser.add_argument(
        "--images", type=non_negative_int, default=12, help="gallery size, worst first (default 12)"
    )
    parser.add_argument(
        "--score-thresh", type=fraction, default=0.5,
        help="detections drawn and counted as false positives from this score on (0 to 1)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="extend", nargs="+", default=[],
        help="override a key of the run's config.yaml, e.g. --set data.test.root=/data/voc",
    )  # fmt: skip
    add_trust_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / REPORT
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; expected the .html file to write")
    if run_dir.is_dir():  # (else one line about the run, without creating its folder)
        output_folder(out.parent, "the folder of --out")  # before the work, not after it
    page = build_report(run_dir, args.images, args.score_thresh, args.overrides, args.trust_weights)
    atomic_write_text(out, page)
    print(out)
    return 0


def build_report(
    run_dir: Path,
    num_images: int,
    score_thresh: float,
    overrides: Sequence[str] = (),
    trust_weights: bool = False,
) -> str:
    """The report page of a run, as one HTML string (see the module docstring);
    ``trust_weights``: ``--trust-weights`` (the run's config cannot say so)."""
    from detection.data.build import build_detection_test_loader

    run = RunFolder(run_dir)
    config = run.file(CONFIG_FILE, "written by resdet train into its output_dir")
    # AP null (or NaN, older files): no test objects
    results = run.eval_results(f"written by resdet train or {EVAL_HINT}")
    cfg = load_config(config, overrides)
    cfg.trust_weights = trust_weights
    _, records, names = build_detection_test_loader(cfg)
    detections = run_detections(run, cfg, records, names)
    sections = [
        ("Config", config_table(cfg, names)),
        ("Data", data_statistics(cfg, names)),
        ("Training curves", training_curves(run)),
        ("Average precision", ap_section(results)),
        ("Precision-recall", pr_section(run_dir, cfg, records, detections, names)),
        ("Test images, worst first", gallery(records, detections, names, num_images,
                                             score_thresh)),
    ]  # fmt: skip
    return page(f"resdet report: {run_dir}", header(run_dir, results), sections)


# ---------------------------------------------------------------------------- detections


def run_detections(
    run: RunFolder, cfg: Config, records: list[ImageRecord], names: list[str]
) -> list[Detections]:
    """Per test record, the run's detections: from ``coco_results.json``, else by running
    ``model_final.pth`` (original pixels, 0-based labels)."""
    results = run.path / "coco_results.json"
    if results.is_file():
        return read_coco_detections(results, run.path, cfg, records, names)
    weights = run.file(MODEL_FINAL, "written by resdet train; nor is coco_results.json")
    from detection.predictor import Predictor
    from engine.images import decode_image

    predictor = Predictor(cfg, weights)
    return [predictor(decode_image(record.path)) for record in records]


def read_coco_detections(
    path: Path, run_dir: Path, cfg: Config, records: list[ImageRecord], names: list[str]
) -> list[Detections]:
    """``coco_results.json`` back into per-record Detections.

    A VOC-format split is scored under 1-based positions with ``file_name`` = the record id
    (``coco_ground_truth.json``, else the same ``records_to_coco``); a COCO one under its ids.

    Raises:
        UserError: a malformed entry, or an image the test split no longer has.
    """
    from detection.data.coco import read_coco_meta, resolve_ann_file
    from detection.evaluation import load_coco_results, records_to_coco

    row = {str(r.image_id): i for i, r in enumerate(records)}
    if cfg.data.test.format == "coco":
        to_row = {int(r.image_id): i for i, r in enumerate(records)}
        meta = read_coco_meta(resolve_ann_file(cfg.data.test.root, cfg.data.test.ann_file), names)
        category_ids = list(meta.label_to_category_id)
    else:
        saved = run_dir / "coco_ground_truth.json"
        truth = read_json(saved) if saved.is_file() else records_to_coco(records, names)
        unknown = [i["file_name"] for i in truth["images"] if str(i["file_name"]) not in row]
        if unknown:
            raise UserError(f"{path}: image {unknown[0]!r} is not in data.test any more")
        to_row = {i["id"]: row[str(i["file_name"])] for i in truth["images"]}
        category_ids = [c["id"] for c in truth["categories"]]
    entries = load_coco_results(path, to_row, category_ids)
    per_row: list[list[dict[str, object]]] = [[] for _ in records]
    for entry in entries:
        per_row[to_row[int(str(entry["image_id"]))]].append(entry)
    return [_as_detections(rows, category_ids) for rows in per_row]


def _as_detections(entries: list[dict[str, Any]], category_ids: list[int]) -> Detections:
    import torch

    xywh = torch.tensor([e["bbox"] for e in entries], dtype=torch.float32).reshape(-1, 4)
    return Detections(
        torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1),
        torch.tensor([e["score"] for e in entries], dtype=torch.float32),
        torch.tensor([category_ids.index(e["category_id"]) for e in entries], dtype=torch.int64),
    )


# ---------------------------------------------------------------------------- sections


def header(run_dir: Path, results: dict[str, Any]) -> str:
    """The run's iteration, weights, test size and headline numbers (n/a where null)."""
    heads = ", ".join(f"{k} {_percent(v)}" for k, v in results.get("headline", {}).items())
    facts = [f"iteration {results.get('iteration', '?')}", f"weights {results.get('weights')}",
             f"{results.get('num_images', '?')} test images", heads]  # fmt: skip
    return f"<p class=lead>{esc(' · '.join(str(f) for f in facts if f))}</p><p>{esc(run_dir)}</p>"


def config_table(cfg: Config, names: list[str]) -> str:
    """The settings that define the run, as a two-column table."""
    b, s, inp = cfg.model.backbone, cfg.solver, cfg.input

    def data(section: Any) -> str:
        return f"{section.format} {section.root} {', '.join(section.splits)}"

    rows = [
        ("arch", cfg.model.arch),
        ("classes", ", ".join(names)),
        ("backbone", f"{b.name}, width {b.base_width}, norm {b.norm}, freeze_at {b.freeze_at}"),
        ("backbone weights", b.weights or "none (from scratch)"),
        ("data.train", data(cfg.data.train)),
        ("data.test", data(cfg.data.test)),
        ("input", f"train shorter side {inp.min_size_train} (<= {inp.max_size_train}), "
                  f"test {inp.min_size_test} (<= {inp.max_size_test})"),
        ("schedule", f"{s.max_iter} iterations of {s.ims_per_batch} images, lr {s.base_lr} "
                     f"(x{s.gamma} at {s.steps}), warm-up {s.warmup_iters}"),
        ("test.metrics", ", ".join(cfg.test.metrics)),
    ]  # fmt: skip
    return table(["key", "value"], [list(r) for r in rows])


def data_statistics(cfg: Config, names: list[str]) -> str:
    """``resdet dataset-stats`` of both splits, side by side."""
    from detection.data.build import load_dataset_records
    from detection.data.stats import dataset_stats, render
    from detection.modeling.anchor_maps import anchors_for_input

    anchors, inp = anchors_for_input(cfg), cfg.input
    texts = []
    for split in ("train", "test"):
        records = load_dataset_records(getattr(cfg.data, split), names, f"data.{split}")
        stats = dataset_stats(records, names, inp.min_size_test, inp.max_size_test, anchors,
                              cfg.model.rpn.iou_thresholds[1])  # fmt: skip
        texts.append(f"<pre>{esc(render(stats, f'data.{split}'))}</pre>")
    return f"<div class=stats>{''.join(texts)}</div>"


def training_curves(run: RunFolder) -> str:
    from tools import plot

    log = plot.read_log(run.path)
    metrics = [m for m in plot.pick_metrics([log], None)
               if not m.startswith("eval.") or m in HEADLINE_METRICS]  # fmt: skip
    return img(png_uri(plot.draw_curves([log], metrics)), "training curves")


def ap_section(results: dict[str, Any]) -> str:
    from tools.eval import ap_table

    head, rows = ap_table(results.get("metrics", {}))
    return table(head, rows, "ap")


def pr_section(
    run_dir: Path, cfg: Config, records: list[ImageRecord], detections: list[Detections],
    names: list[str],
) -> str:  # fmt: skip
    """The run's ``pr_curves.json``, else curves computed from its detections."""
    from detection.evaluation import PR_CURVES, draw_pr_curves, read_pr_curves

    path = run_dir / PR_CURVES
    if path.is_file():
        payload, note = read_pr_curves(path), f"from {PR_CURVES}"
    else:
        note = f"computed from the detections (this run has no {PR_CURVES})"
        payload = voc_curves(cfg, records, detections, names)
    return f"<p>{esc(note)}</p>" + img(png_uri(draw_pr_curves(payload)), "precision-recall")


def voc_curves(
    cfg: Config, records: list[ImageRecord], detections: list[Detections], names: list[str]
) -> dict[str, Any]:
    """The ``pr_curves.json`` payload of ``detections``, scored as evaluation scores them."""
    from detection.evaluation.evaluator import score_voc
    from detection.evaluation.pr_curves import pr_curves_payload

    metric = next((m for m in cfg.test.metrics if m in ("voc07", "voc")), "voc07")
    return pr_curves_payload(score_voc(records, detections, names, metric))


@dataclass
class Mistakes:
    missed: int  # non-ignored objects no detection >= the threshold found (IoU >= 0.5)
    false_positives: int  # detections >= the threshold that found no object


def image_mistakes(record: ImageRecord, dets: Detections, score_thresh: float) -> Mistakes:
    """Greedy matching in score order: a detection takes the free object of its class it
    overlaps most, if IoU >= 0.5; one on an ignored (difficult / crowd) object counts as
    neither a hit nor a false positive."""
    import torch

    from detection.modeling.box_ops import box_iou

    order = torch.argsort(dets.scores, descending=True)
    order = order[dets.scores[order] >= score_thresh]
    labels = torch.as_tensor(record.labels)
    ignore = torch.as_tensor(record.ignore, dtype=torch.bool)
    same_class = dets.labels[order, None] == labels[None, :]
    iou = box_iou(dets.boxes[order], torch.as_tensor(record.boxes).reshape(-1, 4)) * same_class
    taken = torch.zeros(len(labels), dtype=torch.bool)
    false_positives = 0
    for overlaps in iou:  # (G,) of one detection, in score order
        free = overlaps.masked_fill(taken | ignore, 0.0)
        if free.numel() and free.max() >= 0.5:
            taken[free.argmax()] = True
        elif not bool((overlaps.masked_fill(~ignore, 0.0) >= 0.5).any()):
            false_positives += 1
    return Mistakes(int((~taken & ~ignore).sum()), false_positives)


def gallery(
    records: list[ImageRecord], detections: list[Detections], names: list[str], count: int,
    score_thresh: float,
) -> str:  # fmt: skip
    """Detections next to ground truth for the ``count`` images with the most mistakes."""
    mistakes = [image_mistakes(r, d, score_thresh) for r, d in zip(records, detections)]
    order = sorted(range(len(records)), key=lambda i: (
        -(mistakes[i].missed + mistakes[i].false_positives), -mistakes[i].missed, i))  # fmt: skip
    cards = [_card(records[i], detections[i], names, mistakes[i], score_thresh)
             for i in order[: max(count, 0)]]  # fmt: skip
    total = sum(m.missed for m in mistakes), sum(m.false_positives for m in mistakes)
    lead = (f"{plural(total[0], 'missed object')} and {plural(total[1], 'false positive')} "
            f"over {len(records)} images at score >= {score_thresh:g}, IoU >= 0.5; "
            f"the {min(count, len(records))} with the most are shown")  # fmt: skip
    return f"<p>{esc(lead)}</p>" + "".join(cards)


def _card(
    record: ImageRecord, dets: Detections, names: list[str], mistakes: Mistakes, thresh: float
) -> str:
    from detection.visualize import draw_detections, draw_ground_truth
    from engine.images import decode_image

    image = decode_image(record.path)
    scale = min(1.0, THUMB_SIDE / max(image.shape[:2]))
    image = _resize(image, scale)
    found = Detections(dets.boxes * scale, dets.scores, dets.labels)
    drawn = draw_detections(image, found, names, thresh)
    truth = draw_ground_truth(image, record.boxes * scale, record.labels, record.ignore, names)
    title = (f"{record.image_id}: {plural(mistakes.missed, 'missed object')}, "
             f"{plural(mistakes.false_positives, 'false positive')}")  # fmt: skip
    figures = [f"<figure>{img(jpeg_uri(drawn), 'detections')}<figcaption>detections "
               f"(score &gt;= {thresh:g})</figcaption></figure>",
               f"<figure>{img(jpeg_uri(truth), 'ground truth')}<figcaption>ground truth"
               "</figcaption></figure>"]  # fmt: skip
    return f"<div class=card><h3>{esc(title)}</h3><div class=row>{''.join(figures)}</div></div>"


# ---------------------------------------------------------------------------- HTML


def _percent(value: object) -> str:
    return f"{100 * value:.1f}%" if is_json_number(value) and math.isfinite(value) else "n/a"


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{esc(css)}'><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def img(uri: str, alt: str) -> str:
    return f"<img src='{uri}' alt='{esc(alt)}'>"


def png_uri(figure: Any) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    from tools.plot import DPI

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def jpeg_uri(image: np.ndarray) -> str:
    """An RGB uint8 (H, W, 3) image as a ``data:image/jpeg;base64,...`` URI."""
    data = encode_image(image, ".jpg", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1150px;
       color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px;
  border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 14px; margin: 6px 0; }
.lead { font-size: 16px; margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } table.ap td + td { text-align: right; }
img { max-width: 100%; height: auto; } pre { background: #f8f8f8; padding: 8px 12px;
  margin: 4px 0; font-size: 12px; white-space: pre-wrap; }
.stats { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; } figcaption { color: #555; font-size: 12px; }
.card { border-top: 1px solid #eee; padding: 8px 0; }
"""


def page(title: str, intro: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete HTML document: no script, no external resource."""
    body = "".join(f"<section><h2>{esc(name)}</h2>{content}</section>"
                   for name, content in sections)  # fmt: skip
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>{intro}{body}</body></html>\n"
    )
