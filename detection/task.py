"""The detection task: a Config in, a trained Faster R-CNN and its mAP out.

:class:`DetectionTask` is what ``engine.run`` needs from detection (model, batches, step,
evaluation, final weights); the loop, checkpoints, logging, seeding and distributed set-up
are the engine's. Outputs in ``output_dir`` (rank 0 only): ``config.yaml``,
``metrics.jsonl``, ``checkpoint_<iter>.pth`` + ``last_checkpoint``, ``model_final.pth``,
``eval_results.json``, ``pr_curves.json`` + ``pr_curves.png`` (with a VOC metric),
``coco_results.json`` (with ``coco_ground_truth.json`` beside it for a VOC-format test split)
and ``voc_results/comp4_det_<split>_<class>.txt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detection.config import Config, InputConfig
from detection.data.build import (
    EvalSplit,
    build_detection_test_loader,
    build_detection_train_loader,
    existing_images,
    load_test_split,
    resolve_class_names,
)
from detection.data.transforms import postprocess_detections
from detection.evaluation import (
    VOC_METRICS,
    COCOEvaluator,
    DatasetEvaluator,
    VOCEvaluator,
    records_to_coco,
)
from detection.inference import (
    detect,
    inference_precision,
    load_detector,
    load_detectors,
    prepare_for_inference,
)
from detection.modeling.build import build_model
from detection.modeling.ensemble import DetectorEnsemble
from detection.modeling.faster_rcnn import FasterRCNN
from detection.structures import DetectionBatch, Detections, ImageRecord
from engine import distributed as dist
from engine.checkpoint import list_checkpoints
from engine.device import prepare_model
from engine.errors import UserError
from engine.images import BadImageError, BadImagePolicy, decode_image
from engine.io import atomic_torch_save, atomic_write_json
from engine.metrics import Progress
from engine.run import evaluate_checkpoint, run_training
from engine.spec import InputSpec

COCO_GROUND_TRUTH = "coco_ground_truth.json"  # a VOC-format test split, as COCO annotations


def input_spec(inp: InputConfig) -> InputSpec:
    """The input a detector of this config expects (what its checkpoints record)."""
    size = (
        f"shorter side {inp.min_size_train} (longer <= {inp.max_size_train}) when training, "
        f"{inp.min_size_test} (<= {inp.max_size_test}) when testing"
    )
    return InputSpec.make(inp.format, inp.pixel_mean, inp.pixel_std, size)


class ExportedDetector(nn.Module):
    """An exported detector run by another runtime, in the place of the model an evaluation
    scores (`DetectionTask.evaluate`).

    Args:
        graph: RGB uint8 (H, W, 3) image -> Detections in original pixels
            (`detection.export.GraphPredictor`).
    """

    def __init__(self, graph: Callable[[np.ndarray], Detections]) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, image: np.ndarray) -> Detections:
        return self.graph(image)


class DetectionTask:
    """Faster R-CNN training and evaluation for ``engine.run`` (see its Task protocol).

    Args:
        cfg: the run's config (for an ensemble: its data, input, test.* and proposal union).
        member_configs: for an ensemble, weights file -> the config its member is built
            from (checked with ``check_member_config``); a file not named here is built
            from ``cfg``.
        runtime: what runs the detector in an evaluation: "torch", or its exported graph
            run by "openvino" / "onnxruntime" (`detection.predictor.Predictor`'s runtimes;
            one weights file, on the CPU).
    """

    def __init__(
        self,
        cfg: Config,
        member_configs: Mapping[str, Config] | None = None,
        runtime: str = "torch",
    ) -> None:
        self.cfg = cfg
        self.member_configs = dict(member_configs or {})
        self.runtime = runtime
        self.amp: str | None = None  # evaluation autocast: test.precision, resolved once
        self.test_split: EvalSplit | None = None  # read by preflight, for the next evaluation

    def preflight(self) -> None:
        """Read the test split (kept for the evaluation that follows) and build its
        evaluators (no image decoded)."""
        self.test_split = load_test_split(self.cfg)
        build_evaluators(self.cfg, self.test_split, None)

    def build_model(self, device: torch.device) -> nn.Module:
        """The detector to train: ``model.weights`` loaded when set (class layers
        re-initialised for other classes), else the backbone's weights alone.

        Training lets go of preflight's test split (each evaluation reads it again rather
        than every DataLoader worker holding a copy through the run)."""
        self.test_split = None
        self.amp = inference_precision(self.cfg.test.precision, device)
        start = self.cfg.model.weights
        model = (
            load_detector(self.cfg, start, f"model.weights {start}")[0]
            if start else build_model(self.cfg)
        )  # fmt: skip
        return prepare_model(model, device, self.cfg.channels_last)

    def load_for_eval(
        self, weights: str | list[str], device: torch.device
    ) -> tuple[nn.Module, int]:
        """One detector from a weights file, or an ensemble of a list's (even of one), ready
        for inference at ``test.precision`` (resolved here, once); with another runtime,
        the detector exported and run by it (`ExportedDetector`)."""
        if self.runtime != "torch":
            return self.exported_for_eval(weights, device)
        model, source = load_detectors(self.cfg, weights, self.member_configs)
        self.amp = inference_precision(self.cfg.test.precision, device)
        ready = prepare_for_inference(
            model, device, self.cfg.channels_last, self.amp, self.cfg.test.compile
        )
        return ready, int(source.get("iteration", 0))

    def exported_for_eval(
        self, weights: str | list[str], device: torch.device
    ) -> tuple[nn.Module, int]:
        """The Predictor's graph of one weights file, run by ``self.runtime``."""
        from detection.predictor import Predictor, check_runtime

        check_runtime(self.runtime, device)
        if not isinstance(weights, str) or self.member_configs:
            raise UserError(f"--runtime {self.runtime} evaluates one detector, not an ensemble")
        predictor = Predictor(self.cfg, weights, device="cpu", runtime=self.runtime)
        assert predictor.graph is not None
        return ExportedDetector(predictor.graph), predictor.iteration

    def train_batches(self, batch_size: int, start_iter: int) -> Any:
        return build_detection_train_loader(self.cfg, batch_size, start_iter)

    def step(self, model: nn.Module, batch: DetectionBatch) -> dict[str, Tensor]:
        """``{loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg}`` of one batch."""
        device = next(model.parameters()).device
        targets = [t.to(device) for t in batch.targets]
        return dict(model(batch.images.to(device), targets).losses)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Score ``model`` on the test split: preflight's reading if no evaluation used it
        yet, else a fresh one (annotations parsed once per evaluation)."""
        split, self.test_split = self.test_split or load_test_split(self.cfg), None
        out = Path(self.cfg.output_dir)
        if isinstance(model, ExportedDetector):
            return evaluate_graph(model.graph, self.cfg, split, out)
        assert isinstance(model, (FasterRCNN, DetectorEnsemble))
        return evaluate_detector(model, self.cfg, split, device, self.amp, out)

    def headline(self, results: dict[str, Any]) -> dict[str, float]:
        return headline(results)

    def meta(self) -> dict[str, Any]:
        return {
            "input": input_spec(self.cfg.input).to_dict(),
            "class_names": resolve_class_names(self.cfg),
        }

    def save_final(self, out: Path, model: nn.Module, iteration: int) -> None:
        """``model_final.pth``: the detector's weights (what `resdet eval --weights` takes)."""
        state = {k: v.detach().cpu() for k, v in dist.unwrap(model).state_dict().items()}
        final = {"model": state, "iteration": iteration, "meta": self.meta()}
        atomic_torch_save(final, out / "model_final.pth")


def train_detector(cfg: Config, resume: bool = False, restart: bool = False) -> dict[str, Any]:
    """Train the detector of ``cfg``; see ``engine.run.run_training``.

    Raises:
        UserError: a bad config, e.g. frozen BN on a randomly initialised backbone.
    """
    check_norm_can_train(cfg, resume)
    return run_training(DetectionTask(cfg), resume, restart)


def check_norm_can_train(cfg: Config, resume: bool) -> None:
    """Refuse frozen BN when the backbone starts from random weights (it cannot normalise).

    A fresh FrozenBatchNorm2d is the identity affine (mean 0, var 1): nothing rescales the
    activations of a He-initialised net, and from-scratch training diverges within a few
    iterations. Weights come from ``model.backbone.weights``, ``model.weights`` (a whole
    detector) or, with ``resume``, from a checkpoint in ``output_dir``.

    Raises:
        UserError: ``model.backbone.norm`` is frozen_bn and neither provides weights.
    """
    backbone = cfg.model.backbone
    if backbone.norm != "frozen_bn" or backbone.weights or cfg.model.weights:
        return
    if resume and list_checkpoints(Path(cfg.output_dir)):
        return
    raise UserError(
        "model.backbone.norm is frozen_bn but model.backbone.weights is empty: frozen BN of a "
        "randomly initialised backbone is a fixed identity affine that cannot normalise (the "
        "run would diverge); train from scratch with --set model.backbone.norm=bn, or set "
        "model.backbone.weights"
    )


def evaluate_weights(
    cfg: Config,
    weights: str | list[str],
    member_configs: Mapping[str, Config] | None = None,
    runtime: str = "torch",
) -> dict[str, Any]:
    """`resdet eval`: score a detector checkpoint (or the ensemble of a list of them, see
    `DetectionTask`) on ``data.test``, run by ``runtime``; rank 0 writes the files."""
    return evaluate_checkpoint(DetectionTask(cfg, member_configs, runtime), weights)


# ---------------------------------------------------------------------------- evaluation
def build_evaluators(
    cfg: Config, split: EvalSplit, out: Path | None, records: list[ImageRecord] | None = None
) -> dict[str, DatasetEvaluator]:
    """One evaluator per ``test.metrics`` entry over ``records`` (default: the split's);
    result files go to ``out`` when given. Nothing is read: the split holds it all."""
    records = split.records if records is None else records
    class_names = split.class_names
    evaluators: dict[str, DatasetEvaluator] = {}
    name = Path(cfg.data.test.splits[0]).name if cfg.data.test.splits else "test"
    for metric in cfg.test.metrics:
        if metric in ("voc07", "voc"):
            voc_dir = out / "voc_results" if out is not None else None
            curves = out if not any(m in VOC_METRICS for m in evaluators) else None  # once
            evaluators[metric] = VOCEvaluator(class_names, metric, voc_dir, name, curves)
        else:  # "coco": the config's choices allow nothing else
            evaluators[metric] = _coco_evaluator(cfg, split, records, out)
    return evaluators


def _coco_evaluator(
    cfg: Config, split: EvalSplit, records: list[ImageRecord], out: Path | None
) -> COCOEvaluator:
    out_json = out / "coco_results.json" if out is not None else None
    backend = cfg.test.coco_backend
    if split.coco is not None:  # a COCO-format split: its own JSON, as read
        return COCOEvaluator(split.coco, split.label_to_category_id, backend, out_json)
    ground_truth = records_to_coco(records, split.class_names)  # e.g. VOC: scored the COCO way
    if out is not None:  # so `resdet score` / `submit` can take coco_results.json as well
        atomic_write_json(out / COCO_GROUND_TRUTH, ground_truth)
    labels = [c["id"] for c in ground_truth["categories"]]
    return COCOEvaluator(ground_truth, labels, backend, out_json)


@torch.no_grad()
def evaluate_detector(
    model: FasterRCNN | DetectorEnsemble,
    cfg: Config,
    split: EvalSplit,
    device: torch.device,
    amp: str | None,
    out: Path | None,
) -> dict[str, Any]:
    """Run the test split through ``model`` and score it with every configured metric.

    Args:
        model: on ``device``; prepared for inference, or the model in training.
        cfg: the run config (data.*, input.*, test.*).
        split: ``data.test`` as read (:func:`~detection.data.build.load_test_split`).
        device: where ``model`` runs.
        amp: the autocast dtype (``detection.inference.inference_precision``; None: fp32).
        out: the folder for the result files (rank 0), or None.

    Every rank runs its shard; the evaluators gather to rank 0, which alone returns metrics
    (and writes the result files when ``out`` is given). Returns {metric: results}.
    """
    loader, records, _ = build_detection_test_loader(cfg, split)

    def detections() -> Iterator[tuple[list[ImageRecord], list[Detections]]]:
        for batch in loader:
            found = detect(model, batch.images.to(device), amp)
            yield batch.records, postprocess_detections([d.to("cpu") for d in found], batch.images)

    was_training = model.training
    model.eval()
    try:
        return score_detections(cfg, split, records, loader.num_images, detections(), out)
    finally:
        model.train(was_training)


def evaluate_graph(
    graph: Callable[[np.ndarray], Detections], cfg: Config, split: EvalSplit, out: Path | None
) -> dict[str, Any]:
    """`evaluate_detector` for an exported graph run by another runtime (``resdet eval
    --runtime``; `detection.export.GraphPredictor`): each test image decoded whole and given
    to ``graph``, which resizes it as the Predictor does; one process."""
    if dist.get_world_size() > 1:
        raise UserError("resdet eval --runtime other than torch runs in one process, not under "
                        "torchrun")  # fmt: skip
    records = existing_images(split.records, cfg.data.skip_bad_images, "data.test")
    policy = BadImagePolicy(cfg.data.skip_bad_images, len(records))

    def detections() -> Iterator[tuple[list[ImageRecord], list[Detections]]]:
        for record in records:
            try:
                image = decode_image(record.path)
            except BadImageError as exc:  # skipped as the torch path's loader skips it
                policy.report(record.path, str(exc))
                continue
            yield [record], [graph(image)]

    return score_detections(cfg, split, records, len(records), detections(), out)


def score_detections(
    cfg: Config,
    split: EvalSplit,
    records: list[ImageRecord],
    num_images: int,
    detections: Iterable[tuple[list[ImageRecord], list[Detections]]],
    out: Path | None,
) -> dict[str, Any]:
    """Every configured metric over ``detections`` (pairs of records and their detections in
    original pixels; this rank's share of ``records``); rank 0 alone returns the metrics and
    writes the result files to ``out`` (if given). ``inference_seconds``: the time taken to
    produce the detections and feed the evaluators."""
    evaluators = build_evaluators(cfg, split, out if dist.is_main() else None, records)
    start = time.perf_counter()
    progress = Progress(num_images, "eval", enabled=dist.is_main())
    for batch_records, found in detections:
        for evaluator in evaluators.values():
            evaluator.process(batch_records, found)
        progress.update(len(batch_records))
    progress.close()
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
