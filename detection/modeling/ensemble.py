"""An ensemble of Faster R-CNN detectors (the paper's appendix B, "Ensemble").

"We use an ensemble for proposing regions, and the union set of proposals are processed by
an ensemble of per-region classifiers": every member runs its own backbone and RPN on the same
batch, the members' proposals of an image become one set of RoIs (`union_proposals`), every
member's RoI head scores all of them, the members' softmax probabilities and class boxes are
averaged per (RoI, class) (`ClassBoxes.mean`) and the usual selection follows (score
threshold, per-class NMS, the best detections per image, box voting if on). Inference only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detection.modeling.faster_rcnn import DetectorOutput, FasterRCNN
from detection.modeling.nms import nms_top_k
from detection.modeling.roi_heads import DEFAULT_RULE, ClassBoxes, DetectionRule, Scorer, refine
from detection.structures import ImageBatch, Proposals, Targets


@torch.no_grad()
def union_proposals(
    members: Sequence[Sequence[Proposals]], nms_thresh: float, topk: int | None
) -> list[Tensor]:
    """Per image, one set of RoIs from every member's proposals.

    ``topk=None`` keeps the whole union, the paper's words ("the union set of proposals");
    with a `topk`, the union goes through NMS at `nms_thresh` (ranked by objectness logit,
    each member's own calibration) and the best `topk` are kept, so that the RoI heads score
    as many RoIs as for a single model. Either way exact repeats are dropped
    (`without_repeats`). A single member's proposals are returned untouched (for FPN the
    RPN's NMS runs per level, and one over all levels would change them).

    Args:
        members: per member, per image Proposals (the same images in the same order).
        nms_thresh: NMS IoU threshold over an image's union.
        topk: RoIs kept per image after NMS, or None for the whole union.

    Returns:
        per image, (R_i, 4) xyxy RoIs: by decreasing objectness, or (None) member after
        member (see `without_repeats`).
    """
    if len(members) == 1:
        return [p.boxes for p in members[0]]
    rois = []
    for per_member in zip(*members, strict=True):
        boxes, logits = without_repeats(per_member)
        if topk is not None:
            boxes = boxes[nms_top_k(boxes, logits, nms_thresh, topk)]
        rois.append(boxes)
    return rois


def without_repeats(parts: Sequence[Proposals]) -> tuple[Tensor, Tensor]:
    """One image's proposals of every member, (P, 4) boxes and (P,) logits, less the exact
    copies of boxes that an earlier member proposed (NMS would keep both copies of a
    zero-area box, its IoU with itself being 0; members with the same weights make many)."""
    boxes, logits = [parts[0].boxes], [parts[0].objectness]
    for p in parts[1:]:
        seen = torch.cat(boxes)
        new = ~(p.boxes[:, None] == seen[None]).all(dim=2).any(dim=1)  # (P_j,)
        boxes.append(p.boxes[new])
        logits.append(p.objectness[new])
    return torch.cat(boxes), torch.cat(logits)


class DetectorEnsemble(nn.Module):
    """Several detectors behind FasterRCNN's inference contract (`forward(images,
    detect=True)` -> DetectorOutput with detections), so the evaluator, `resdet eval` and
    the Predictor run it as they run one model.

    Args:
        members: the detectors (any layouts); they are fed the same ImageBatch and predict
            the same classes in the same order.
        proposal_nms_thresh: NMS IoU threshold over the union of the members' proposals.
        proposals_per_image: RoIs kept from that union after NMS, or None for the whole
            union (no NMS).
        rule: the selection (the members' own `test.*` settings are not used).
        box_refinement: score each RoI's averaged regressed box once more (every member) and
            select from the union of both passes (`roi_heads.refine`).
    """

    def __init__(
        self,
        members: Sequence[FasterRCNN],
        *,
        proposal_nms_thresh: float = 0.7,
        proposals_per_image: int | None = None,
        rule: DetectionRule = DEFAULT_RULE,
        box_refinement: bool = False,
    ) -> None:
        super().__init__()
        if not members or not all(isinstance(m, FasterRCNN) for m in members):
            raise ValueError("DetectorEnsemble needs one or more FasterRCNN members")
        self.members = nn.ModuleList(members)
        self.proposal_nms_thresh = proposal_nms_thresh
        self.proposals_per_image = proposals_per_image
        self.rule = rule
        self.box_refinement = box_refinement

    @property
    def detectors(self) -> list[FasterRCNN]:
        """The members, typed."""
        return [m for m in self.members if isinstance(m, FasterRCNN)]

    def forward(
        self,
        images: ImageBatch,
        targets: Sequence[Targets] | None = None,
        detect: bool = True,
    ) -> DetectorOutput:
        """Detections of the ensemble (no losses: an ensemble is not trained as one).

        Args:
            images: padded, normalised batch (B, 3, H, W), as every member expects it.
            targets: must be None.
            detect: return detections (False: nothing to do, detections None).

        Raises:
            ValueError: targets given, or the module is in training mode.
        """
        if targets is not None or self.training:
            raise ValueError("DetectorEnsemble is inference only: call .eval(), pass no targets")
        if not detect:
            return DetectorOutput({}, None)
        scorers, proposals = zip(*(propose(m, images) for m in self.detectors), strict=True)
        rois = union_proposals(proposals, self.proposal_nms_thresh, self.proposals_per_image)

        def scorer(boxes: Sequence[Tensor]) -> list[ClassBoxes]:
            """Every member's scores and class boxes of the same RoIs, averaged per image."""
            per_member = [member_scorer(boxes) for member_scorer in scorers]
            return [ClassBoxes.mean(parts) for parts in zip(*per_member, strict=True)]

        candidates = scorer(rois)
        if self.box_refinement:
            candidates = refine(scorer, candidates)
        return DetectorOutput({}, self.rule.select(candidates))


def propose(member: FasterRCNN, images: ImageBatch) -> tuple[Scorer, list[Proposals]]:
    """One member on the batch: how it scores RoIs (with its own test-time views, if any:
    `FasterRCNN.scorer`), and its proposals."""
    features = member.extract_features(images.tensor)
    proposals, _ = member.rpn(images, [features[n] for n in member.rpn_features], None)
    return member.scorer(images, features), proposals
