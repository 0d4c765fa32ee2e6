"""Detection training and evaluation: a Config in, a trained Faster R-CNN and its mAP out.

The one place that wires the detection stages into the shared engine (loop, checkpoints,
logging, seeding, distributed set-up). Outputs in ``output_dir`` (rank 0 only):
``config.yaml``, ``metrics.jsonl``, ``checkpoint_<iter>.pth`` + ``last_checkpoint``,
``model_final.pth``, ``eval_results.json``, ``coco_results.json`` and
``voc_results/comp4_det_<split>_<class>.txt``.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from backbones.errors import UserError
from backbones.weights import read_source
from detection.config import Config, atomic_write_text, save_config
from detection.data.build import (
    build_detection_test_loader,
    build_detection_train_loader,
    resolve_ann_file,
)
from detection.data.coco import read_coco_meta
from detection.data.transforms import postprocess_detections
from detection.engine import distributed as dist
from detection.engine.checkpoint import Checkpointer, atomic_torch_save
from detection.engine.logging import MetricsLogger
from detection.engine.loop import StepFn, make_grad_scaler, train_loop
from detection.engine.setup import (
    amp_dtype,
    build_solver,
    loop_options,
    per_process_batch,
    run_process,
)
from detection.evaluation import COCOEvaluator, DatasetEvaluator, VOCEvaluator, records_to_coco
from detection.modeling.build import build_model, load_detector_weights
from detection.modeling.faster_rcnn import FasterRCNN
from detection.structures import DetectionBatch, ImageRecord

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def make_detection_step(device: torch.device) -> StepFn:
    """``(model, DetectionBatch) -> {loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg}``."""

    def step(model: nn.Module, batch: DetectionBatch) -> dict[str, Tensor]:
        targets = [t.to(device) for t in batch.targets]
        return dict(model(batch.images.to(device), targets).losses)

    return step


# ---------------------------------------------------------------------------- evaluation
def build_evaluators(
    cfg: Config, records: list[ImageRecord], class_names: list[str], out: Path | None
) -> dict[str, DatasetEvaluator]:
    """One evaluator per ``test.metrics`` entry; result files go to ``out`` when given."""
    evaluators: dict[str, DatasetEvaluator] = {}
    split = Path(cfg.data.test.splits[0]).name if cfg.data.test.splits else "test"
    for metric in cfg.test.metrics:
        if metric in ("voc07", "voc"):
            voc_dir = out / "voc_results" if out is not None else None
            evaluators[metric] = VOCEvaluator(class_names, metric, voc_dir, split)
        elif metric == "coco":
            evaluators[metric] = _coco_evaluator(cfg, records, class_names, out)
        else:
            raise UserError(f"test.metrics: unknown metric {metric!r}; expected voc07, voc, coco")
    return evaluators


def _coco_evaluator(
    cfg: Config, records: list[ImageRecord], class_names: list[str], out: Path | None
) -> COCOEvaluator:
    out_json = out / "coco_results.json" if out is not None else None
    test = cfg.data.test
    if test.format == "coco":
        ann_file = resolve_ann_file(test.root, test.ann_file)
        meta = read_coco_meta(ann_file, class_names)
        return COCOEvaluator(ann_file, meta.label_to_category_id, cfg.test.coco_backend, out_json)
    ground_truth = records_to_coco(records, class_names)  # e.g. VOC: scored the COCO way
    labels = [c["id"] for c in ground_truth["categories"]]
    return COCOEvaluator(ground_truth, labels, cfg.test.coco_backend, out_json)


@torch.no_grad()
def evaluate_detector(
    model: FasterRCNN, cfg: Config, device: torch.device, out: Path | None
) -> dict[str, Any]:
    """Run the test split through ``model`` and score it with every configured metric.

    Every rank runs its shard; the evaluators gather to rank 0, which alone returns metrics
    (and writes the result files when ``out`` is given). Returns {metric: results}.
    """
    loader, records, class_names = build_detection_test_loader(cfg)
    evaluators = build_evaluators(cfg, records, class_names, out if dist.is_main() else None)
    amp = amp_dtype(cfg.solver, device)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    autocast = torch.autocast(device.type, _AMP[amp]) if amp else nullcontext()
    with autocast:
        for batch in loader:
            detections = model(batch.images.to(device), detect=True).detections or []
            detections = postprocess_detections([d.to("cpu") for d in detections], batch.images)
            for evaluator in evaluators.values():
                evaluator.process(batch.records, detections)
    model.train(was_training)
    seconds = time.perf_counter() - start
    results = {name: evaluator.evaluate() for name, evaluator in evaluators.items()}
    if not dist.is_main():
        return {}
    return {**results, "num_images": len(records), "inference_seconds": round(seconds, 3)}


def headline(results: dict[str, Any]) -> dict[str, float]:
    """mAP@.5 (VOC07, else VOC, else COCO AP50) and mAP@[.5,.95] (COCO AP) when present."""
    out: dict[str, float] = {}
    voc = results.get("voc07") or results.get("voc")
    if voc:
        out["mAP@.5"] = voc["mAP"]
    if results.get("coco"):
        out.setdefault("mAP@.5", results["coco"]["AP50"])
        out["mAP@[.5,.95]"] = results["coco"]["AP"]
    return out


def write_eval_results(out: Path, results: dict[str, Any], iteration: int, weights: str) -> None:
    """``eval_results.json``: headline numbers, every metric's results, and provenance."""
    metrics = {k: v for k, v in results.items() if k in ("voc07", "voc", "coco")}
    payload = {
        "iteration": iteration,
        "weights": weights,
        "headline": headline(results),
        "metrics": metrics,
        "num_images": results.get("num_images"),
        "inference_seconds": results.get("inference_seconds"),
    }
    atomic_write_text(out / "eval_results.json", json.dumps(payload, indent=2) + "\n")


# ------------------------------------------------------------------------------ training
def train_detector(cfg: Config, resume: bool = False) -> dict[str, Any]:
    """Train the detector of ``cfg`` (a whole run, or its rest after ``--resume``).

    Launched by ``torchrun``, every process runs this; rank 0 writes the files.

    Returns:
        The loop's final metrics, with "eval" = the test-set results of the final model.

    Raises:
        UserError: bad data or settings. NonFiniteLossError / TrainingInterrupted from the
            loop (see detection.engine.loop).
    """
    with run_process(cfg) as device:
        return _train(cfg, resume, device)


def _train(cfg: Config, resume: bool, device: torch.device) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    batch = per_process_batch(cfg.solver)
    model = build_model(cfg).to(device)
    ddp = dist.wrap_ddp(model, device)
    optimizer, schedule = build_solver(cfg.solver, model)
    amp = amp_dtype(cfg.solver, device)
    scaler = make_grad_scaler(amp, device)
    checkpointer = Checkpointer(out, ddp, optimizer, schedule, scaler)
    start = int(checkpointer.resume().get("iteration", 0)) if resume else 0
    if dist.is_main():
        save_config(cfg, out / "config.yaml")
    loader = build_detection_train_loader(cfg, batch, start)
    logger = MetricsLogger(
        out, cfg.solver.max_iter, start, enabled=dist.is_main(), tensorboard=cfg.tensorboard
    )
    try:
        final = train_loop(
            ddp,
            optimizer,
            schedule,
            loader,
            make_detection_step(device),
            loop_options(cfg, cfg.test.eval_period, amp),
            start_iter=start,
            scaler=scaler,
            checkpointer=checkpointer,
            eval_fn=lambda: evaluate_detector(model, cfg, device, out),
            logger=logger,
        )
    finally:
        logger.close()
    if dist.is_main():
        save_final(out, model, cfg.solver.max_iter)
        write_eval_results(out, final.get("eval", {}), cfg.solver.max_iter, "model_final.pth")
    return final


def save_final(out: Path, model: nn.Module, iteration: int) -> None:
    """``model_final.pth``: the detector's weights (what `resdet eval --weights` takes)."""
    state = {k: v.detach().cpu() for k, v in dist.unwrap(model).state_dict().items()}
    atomic_torch_save({"model": state, "iteration": iteration}, out / "model_final.pth")


def evaluate_weights(cfg: Config, weights: str) -> dict[str, Any]:
    """`resdet eval`: score a detector checkpoint on ``data.test``; rank 0 writes the files."""
    with run_process(cfg) as device:
        source = read_source(weights)
        model = build_model(cfg, load_backbone_weights=False)
        load_detector_weights(model, source)
        model.to(device)
        results = evaluate_detector(model, cfg, device, Path(cfg.output_dir))
        if dist.is_main():
            iteration = int(source.get("iteration", 0))
            write_eval_results(Path(cfg.output_dir), results, iteration, weights)
        return results
