"""Fast R-CNN on the proposals (Girshick 2015): sample RoIs, pool, classify, refine, suppress.

Training: ground-truth boxes join the proposals, every RoI is matched to the ground truth
(foreground at IoU >= 0.5, background below), a fixed-size sample with at most 25 %
foreground is pooled and scored; losses are the softmax cross-entropy over K + 1 classes and
the class-specific box loss on the foreground. Inference: softmax, per-class decoding,
clipping, a score threshold, per-class NMS and the best detections per image.

Global context (appendix B, `model.roi_heads.global_context`): each image's whole box is
pooled as one more RoI through the same box head, and its feature is concatenated with every
region feature of that image before the predictor (which then takes 2 D inputs).

Head class index 0 is background; real class c (0-based label) is index c + 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detection.modeling.box_ops import BoxCoder, clip_boxes, large_enough, whole_image_box
from detection.modeling.box_voting import box_voting
from detection.modeling.heads import FastRCNNPredictor
from detection.modeling.losses import box_regression_loss, check_box_loss
from detection.modeling.matcher import Matcher, match_boxes
from detection.modeling.nms import batched_nms_top_k
from detection.modeling.poolers import ROIPooler
from detection.modeling.sampler import sample_labels
from detection.structures import Detections, ImageBatch, Proposals, Targets


@dataclass
class SampledRoIs:
    """The RoIs of one image chosen for the Fast R-CNN losses."""

    boxes: Tensor  # (R, 4) float32 xyxy, network-input pixels
    classes: Tensor  # (R,) int64 head class index: 0 background, label + 1 foreground
    gt_boxes: Tensor  # (R, 4) float32 xyxy matched ground truth (meaningful on foreground)


@torch.no_grad()
def sample_proposals(
    proposals: Sequence[Tensor],
    targets: Sequence[Targets],
    matcher: Matcher,
    batch_size_per_image: int,
    positive_fraction: float,
    add_gt_as_proposals: bool = True,
) -> list[SampledRoIs]:
    """Match proposals to the ground truth and keep a balanced sample per image.

    Args:
        proposals: per image, (P_i, 4) xyxy.
        targets: per image, ground truth.
        matcher: IoU rule (foreground >= iou_threshold, background in [bg_iou_low, it)).
        batch_size_per_image: RoIs per image.
        positive_fraction: cap on the foreground share.
        add_gt_as_proposals: append the (non-ignored) ground-truth boxes to the proposals.

    Returns:
        per image, the sampled RoIs (foreground first).
    """
    sampled = []
    for boxes, t in zip(proposals, targets):
        if add_gt_as_proposals:
            boxes = torch.cat((boxes, t.boxes[~t.ignore].to(boxes.dtype)))
        matches, labels, gt_boxes = match_boxes(matcher, t.boxes, t.ignore, boxes)
        pos, neg = sample_labels(labels, batch_size_per_image, positive_fraction)
        index = torch.cat((pos, neg))
        classes = torch.zeros(len(index), dtype=torch.int64, device=boxes.device)
        if len(pos):
            classes[: len(pos)] = t.labels[matches[pos]] + 1
        sampled.append(SampledRoIs(boxes[index], classes, gt_boxes[index]))
    return sampled


def fast_rcnn_losses(
    class_logits: Tensor,
    box_deltas: Tensor,
    sampled: Sequence[SampledRoIs],
    box_coder: BoxCoder,
    loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 1.0,
) -> dict[str, Tensor]:
    """Classification and box losses over the sampled RoIs of the batch.

    Args:
        class_logits: (R, K + 1) scores, RoIs in `sampled` order.
        box_deltas: (R, 4 (K + 1)) class-specific deltas.
        sampled: per image, from `sample_proposals`.
        box_coder: Fast R-CNN box coder.
        loss_type: "smooth_l1" or "l1".
        smooth_l1_beta: smooth-L1 transition point.

    Returns:
        {"loss_cls": mean cross-entropy, "loss_box_reg": foreground box loss / R}.
    """
    classes = torch.cat([s.classes for s in sampled])
    if classes.numel() == 0:  # nothing sampled: zero losses that still reach the graph
        zero = class_logits.sum() * 0 + box_deltas.sum() * 0
        return {"loss_cls": zero, "loss_box_reg": zero}
    loss_cls = F.cross_entropy(class_logits.float(), classes)
    fg = torch.nonzero(classes > 0).squeeze(1)
    boxes = torch.cat([s.boxes for s in sampled])[fg]
    gt_boxes = torch.cat([s.gt_boxes for s in sampled])[fg]
    deltas = box_deltas.view(len(classes), -1, 4)[fg, classes[fg]]  # (F, 4) own class only
    targets = box_coder.encode(boxes, gt_boxes)
    loss_box = box_regression_loss(deltas.float(), targets, loss_type, smooth_l1_beta)
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box / classes.numel()}


@dataclass
class ClassBoxes:
    """One image's candidate detections: every RoI's score and decoded box for every class.

    Everything test time does (box refinement, flipped or multi-scale passes, ensembles)
    produces or combines these; `select_detections` turns them into detections.
    """

    scores: Tensor  # (R, K + 1) float32 softmax probabilities, background first
    boxes: Tensor  # (R, K + 1, 4) float32 xyxy per class, clipped, network-input pixels

    @staticmethod
    def union(parts: Sequence[ClassBoxes]) -> ClassBoxes:
        """All candidates of ``parts`` (the same image), RoIs concatenated in order."""
        return ClassBoxes(torch.cat([p.scores for p in parts]), torch.cat([p.boxes for p in parts]))

    @staticmethod
    def mean(parts: Sequence[ClassBoxes]) -> ClassBoxes:
        """The same RoIs of one image scored several times (flipped views, ensemble members):
        per (RoI, class) the mean of their probabilities and of their decoded boxes."""
        scores = torch.stack([p.scores for p in parts]).mean(dim=0)
        return ClassBoxes(scores, torch.stack([p.boxes for p in parts]).mean(dim=0))

    def best_boxes(self) -> Tensor:
        """(R, 4): each RoI's box for its highest-scoring object class (background excluded)."""
        best = self.scores[:, 1:].argmax(dim=1) + 1
        return self.boxes[torch.arange(len(best), device=best.device), best]


Scorer = Callable[[Sequence[Tensor]], list[ClassBoxes]]  # per image (R_i, 4) RoIs -> candidates


@torch.no_grad()
def decode_predictions(
    class_logits: Tensor,
    box_deltas: Tensor,
    rois: Sequence[Tensor],
    image_sizes: Sequence[tuple[int, int]],
    box_coder: BoxCoder,
) -> list[ClassBoxes]:
    """The head's raw outputs -> per image softmax scores and class boxes clipped to the image.

    Args:
        class_logits: (R, K + 1), RoIs of all images in order.
        box_deltas: (R, 4 (K + 1)).
        rois: per image, (R_i, 4) xyxy, the boxes the deltas refine.
        image_sizes: per image, (h, w) before padding.
        box_coder: Fast R-CNN box coder.
    """
    num_classes = class_logits.shape[1] - 1
    boxes = box_coder.decode(box_deltas.float(), torch.cat(list(rois)).float())
    scores = F.softmax(class_logits.float(), dim=1)
    counts = [r.shape[0] for r in rois]  # not len(): traced sizes in an ONNX export
    return [
        ClassBoxes(image_scores, clip_boxes(image_boxes.view(-1, num_classes + 1, 4), size))
        for image_boxes, image_scores, size in zip(
            boxes.split(counts), scores.split(counts), image_sizes
        )
    ]


def select_detections(
    candidates: ClassBoxes,
    score_thresh: float,
    nms_thresh: float,
    detections_per_image: int,
    min_box_size: float = 1e-2,
    box_voting_iou: float | None = None,
) -> Detections:
    """One image's candidates -> its detections.

    Every (RoI, object class) pair is a candidate with the class's probability as its score.
    Candidates scoring above `score_thresh` whose sides are at least `min_box_size` (a
    clipped box can collapse) go through NMS per class; the best `detections_per_image`
    survive; with `box_voting_iou` each survivor's box is then the score-weighted mean of its
    class's candidates at IoU >= box_voting_iou with it.

    Args:
        candidates: the image's scores (R, K + 1) and class boxes (R, K + 1, 4).
        score_thresh: scores must exceed this.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_image: cap per image.
        min_box_size: smallest side kept (input pixels).
        box_voting_iou: the voting threshold, or None for no box voting.

    Returns:
        Detections (labels 0-based) by decreasing score.
    """
    num_rois, num_classes = candidates.scores.shape[0], candidates.scores.shape[1] - 1
    boxes = candidates.boxes[:, 1:].reshape(-1, 4)  # (R K, 4), RoI-major
    scores = candidates.scores[:, 1:].reshape(-1)
    classes = torch.arange(1, num_classes + 1, device=boxes.device)
    classes = classes.expand(num_rois, -1).reshape(-1)  # (R K,) head class indices
    keep = torch.nonzero(scores > score_thresh).squeeze(1)
    keep = keep[large_enough(boxes[keep], min_box_size)]
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    keep = batched_nms_top_k(boxes, scores, classes, nms_thresh, detections_per_image)
    kept = boxes[keep]
    if box_voting_iou is not None:
        kept = box_voting(kept, classes[keep], boxes, scores, classes, box_voting_iou)
    return Detections(kept, scores[keep], classes[keep] - 1)


@dataclass(frozen=True)
class DetectionRule:
    """How each image's candidates become its detections (`select_detections`; `test.*`):
    the one selection of a RoI head and of an ensemble."""

    score_thresh: float = 0.05  # scores must exceed this
    nms_thresh: float = 0.3  # per-class NMS IoU threshold
    detections_per_image: int = 100  # cap per image
    min_box_size: float = 1e-2  # smallest side kept (input pixels): drops collapsed boxes
    box_voting_iou: float | None = None  # box voting's IoU threshold, or None for none

    def select(self, candidates: Sequence[ClassBoxes]) -> list[Detections]:
        """Per image, `select_detections` with this rule."""
        rule = (
            self.score_thresh, self.nms_thresh, self.detections_per_image, self.min_box_size,
            self.box_voting_iou,
        )  # fmt: skip
        return [select_detections(c, *rule) for c in candidates]


DEFAULT_RULE = DetectionRule()


def refine(scorer: Scorer, first: Sequence[ClassBoxes]) -> list[ClassBoxes]:
    """Box refinement (the paper's appendix B, after Gidaris & Komodakis): score each RoI's
    regressed box (its best class's) once more, as a new RoI, and return the union of the
    first and the new predictions per image (2 R_i candidates)."""
    second = scorer([c.best_boxes() for c in first])
    return [ClassBoxes.union(pair) for pair in zip(first, second)]


def with_global_feature(block: Tensor) -> Tensor:
    """One image's box-head outputs, its whole-image RoI last: (R_i + 1, D) -> (R_i, 2 D),
    each region's feature followed by the global one."""
    regions, whole = block[:-1], block[-1:]
    return torch.cat((regions, whole.expand(regions.shape[0], -1)), dim=1)


class ROIHeads(nn.Module):
    """The Fast R-CNN stage on top of the shared feature maps.

    Args:
        in_features: names of the maps RoIs are pooled from, finest first.
        pooler: RoI pooling over those maps.
        box_head: pooled feature -> vector (Res5Head, VGGHead or TwoFCHead).
        predictor: vector -> class scores and deltas.
        box_coder: Fast R-CNN box coder (weights 10, 10, 5, 5 as a rule).
        matcher: RoI labelling rule.
        batch_size_per_image: RoIs sampled per image for the losses.
        positive_fraction: cap on foreground in that sample.
        add_gt_as_proposals: add ground-truth boxes to the proposals when training.
        loss_type: "smooth_l1" or "l1".
        smooth_l1_beta: smooth-L1 transition point.
        rule: how inference selects the detections (threshold, NMS, cap, box voting).
        box_refinement: at inference, score each RoI's regressed box once more and select
            from the union of both passes (`refine`).
        global_context: concatenate each image's global feature with its region features
            (`box_features`); the predictor must take 2 D inputs.
    """

    def __init__(
        self,
        in_features: Sequence[str],
        pooler: ROIPooler,
        box_head: nn.Module,
        predictor: FastRCNNPredictor,
        box_coder: BoxCoder,
        matcher: Matcher,
        *,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        add_gt_as_proposals: bool = True,
        loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 1.0,
        rule: DetectionRule = DEFAULT_RULE,
        box_refinement: bool = False,
        global_context: bool = False,
    ) -> None:
        super().__init__()
        check_box_loss(loss_type)
        self.in_features = list(in_features)
        self.pooler = pooler
        self.box_head = box_head
        self.predictor = predictor
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.add_gt_as_proposals = add_gt_as_proposals
        self.loss_type = loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.rule = rule
        self.box_refinement = box_refinement
        self.global_context = global_context

    def box_features(
        self,
        features: Sequence[Tensor],
        boxes: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> Tensor:
        """Pool and run the box head: per image (R_i, 4) RoIs -> (R, D) region features, or
        (R, 2 D) with global context (each region's feature, then its image's global one).

        Args:
            features: the `in_features` maps, (N, C, H_l, W_l) each.
            boxes: per image, (R_i, 4) xyxy RoIs in network-input pixels.
            image_sizes: per image, (h, w) before padding.
        """
        if self.global_context:
            # each image's unpadded box is its last RoI: one pooler and box-head call (BN in
            # the head sees one batch). On an FPN the level mapping sends it to the coarsest
            # level once sqrt(h w) >= canonical_size * 2 ** (max_level - canonical_level)
            # (448 px for P5 with 224 on P4); a smaller image's whole box lands finer, as any
            # box of its size would (a 128 px square: P3)
            boxes = [torch.cat((b, whole_image_box(s, b))) for b, s in zip(boxes, image_sizes)]
        return self.head_features(self.pooler(features, boxes), [b.shape[0] for b in boxes])

    def head_features(self, pooled: Tensor, counts: Sequence[int]) -> Tensor:
        """The box head on pooled RoIs: (sum counts, C, S, S) -> (R, D), or (R, 2 D) with
        global context, where each image's block of `counts[i]` ends with its whole-image RoI.
        """
        x = self.box_head(pooled)
        if not self.global_context:
            return x
        return torch.cat([with_global_feature(block) for block in x.split(list(counts))])

    def predict(
        self,
        features: Sequence[Tensor],
        boxes: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> tuple[Tensor, Tensor]:
        """Region features, then the predictor: -> (R, K + 1) logits, (R, 4 (K + 1)) deltas."""
        return self.predictor(self.box_features(features, boxes, image_sizes))

    def candidates(
        self,
        features: Sequence[Tensor],
        boxes: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[ClassBoxes]:
        """Per image, the scores and decoded class boxes of the given RoIs."""
        logits, deltas = self.predict(features, boxes, image_sizes)
        return decode_predictions(logits, deltas, boxes, image_sizes, self.box_coder)

    def forward(
        self,
        images: ImageBatch,
        features: dict[str, Tensor],
        proposals: Sequence[Proposals],
        targets: Sequence[Targets] | None = None,
        detect: bool = False,
        scorer: Scorer | None = None,
    ) -> tuple[list[Detections] | None, dict[str, Tensor]]:
        """Losses when targets are given; detections when asked.

        Args:
            images: the batch (image sizes for clipping).
            features: name -> (N, C, H_l, W_l), at least `in_features`.
            proposals: per image, from the RPN.
            targets: per image ground truth, or None.
            detect: also run inference on all proposals.
            scorer: how RoIs are scored for detection (`detection.modeling.augmented_inference`'s
                multi-scale / flipped views); default `candidates` on ``features``.

        Returns:
            (per image Detections in network-input pixels or None, losses or {}).
        """
        maps = [features[name] for name in self.in_features]
        sizes = images.image_sizes
        losses: dict[str, Tensor] = {}
        if targets is not None:
            sampled = sample_proposals(
                [p.boxes for p in proposals], targets, self.matcher,
                self.batch_size_per_image, self.positive_fraction, self.add_gt_as_proposals,
            )  # fmt: skip
            logits, deltas = self.predict(maps, [s.boxes for s in sampled], sizes)
            losses = fast_rcnn_losses(
                logits, deltas, sampled, self.box_coder, self.loss_type, self.smooth_l1_beta
            )
        if not detect:
            return None, losses
        if scorer is None:
            scorer = functools.partial(self.candidates, maps, image_sizes=sizes)
        candidates = scorer([p.boxes for p in proposals])
        if self.box_refinement:
            candidates = refine(scorer, candidates)
        return self.rule.select(candidates), losses
