"""Region Proposal Network (Ren et al. 2015, Sec. 3.1).

A 3x3 conv slides over each feature map; at every position two sibling 1x1 convs score A
anchors (objectness logits) and regress them (4A deltas). Training labels a balanced sample of
anchors against the ground truth; inference keeps the best-scoring decoded anchors per feature
map, clips them, drops tiny ones and applies NMS per map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.fused import conv_relu
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_ops import BoxCoder, clip_boxes, large_enough
from detection.modeling.losses import box_regression_loss, check_box_loss
from detection.modeling.matcher import Matcher, match_boxes
from detection.modeling.nms import batched_nms_top_k
from detection.modeling.sampler import sample_labels
from detection.structures import ImageBatch, Proposals, Targets


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then objectness (A channels) and box deltas (4A channels).

    Args:
        in_channels: channels of every input feature map (also the 3x3 conv's width).
        num_anchors: anchors per position, A.
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per map: (N, C, H, W) -> logits (N, A, H, W) and deltas (N, 4A, H, W)."""
        logits, deltas = [], []
        for x in features:
            t = conv_relu(self.conv, x)  # one fused call at CPU inference
            logits.append(self.objectness(t))
            deltas.append(self.deltas(t))
        return logits, deltas


def flatten_logits(logits: Tensor) -> Tensor:
    """(N, A, H, W) -> (N, H*W*A), the anchors' order."""
    return logits.permute(0, 2, 3, 1).flatten(1)


def flatten_deltas(deltas: Tensor) -> Tensor:
    """(N, A*4, H, W) -> (N, H*W*A, 4), the anchors' order."""
    n, _, h, w = deltas.shape
    return deltas.reshape(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)


@torch.no_grad()
def label_and_sample_anchors(
    anchors: Tensor,
    targets: Sequence[Targets],
    matcher: Matcher,
    batch_size_per_image: int,
    positive_fraction: float,
) -> tuple[Tensor, Tensor]:
    """Label anchors against each image's ground truth and keep a balanced sample.

    Args:
        anchors: (M, 4) xyxy anchors of all feature maps, concatenated.
        targets: per image, ground truth in network-input pixels.
        matcher: IoU rule (RPN: negative < 0.3 <= ignored < 0.7 <= positive).
        batch_size_per_image: anchors sampled per image.
        positive_fraction: cap on the share of positives in the sample.

    Returns:
        labels: (N, M) int8: 1 sampled positive, 0 sampled negative, -1 not sampled.
        gt_boxes: (N, M, 4) matched ground-truth box of every anchor (meaningful on positives).
    """
    all_labels, all_boxes = [], []
    for t in targets:
        _, labels, gt_boxes = match_boxes(matcher, t.boxes, t.ignore, anchors)
        pos, neg = sample_labels(labels, batch_size_per_image, positive_fraction)
        sampled = torch.full_like(labels, -1)
        sampled[pos], sampled[neg] = 1, 0
        all_labels.append(sampled)
        all_boxes.append(gt_boxes)
    return torch.stack(all_labels), torch.stack(all_boxes)


def rpn_losses(
    anchors: Tensor,
    logits: Tensor,
    deltas: Tensor,
    labels: Tensor,
    gt_boxes: Tensor,
    box_coder: BoxCoder,
    loss_type: str,
    smooth_l1_beta: float,
    normalizer: float,
) -> dict[str, Tensor]:
    """Objectness (sigmoid BCE over sampled anchors) and box (positives) losses.

    Both sums are divided by `normalizer`, Detectron2's ``batch_size_per_image * N``.

    Args:
        anchors: (M, 4) xyxy.
        logits: (N, M) objectness logits.
        deltas: (N, M, 4) predicted deltas.
        labels: (N, M) from `label_and_sample_anchors`.
        gt_boxes: (N, M, 4) matched ground truth.
        box_coder: RPN box coder.
        loss_type: "smooth_l1" or "l1".
        smooth_l1_beta: smooth-L1 transition point.
        normalizer: divisor of both sums.

    Returns:
        {"loss_rpn_cls": scalar, "loss_rpn_loc": scalar}.
    """
    positive = labels == 1
    sampled = labels >= 0
    pos_image, pos_anchor = torch.nonzero(positive, as_tuple=True)
    target_deltas = box_coder.encode(anchors[pos_anchor], gt_boxes[pos_image, pos_anchor])
    loc = box_regression_loss(deltas[positive].float(), target_deltas, loss_type, smooth_l1_beta)
    cls = F.binary_cross_entropy_with_logits(
        logits[sampled].float(), labels[sampled].float(), reduction="sum"
    )
    return {"loss_rpn_cls": cls / normalizer, "loss_rpn_loc": loc / normalizer}


def topk_count(scores: Tensor, k: int) -> int:
    """``min(k, scores.shape[1])``; while tracing a traced value, so that an exported graph
    keeps it dynamic (torchvision's ``_topk_min``)."""
    if not torch.jit.is_tracing():
        return min(k, scores.shape[1])
    return torch.clamp(torch._shape_as_tensor(scores)[1], max=k)  # type: ignore[return-value]


@torch.no_grad()
def select_proposals(
    anchors: Sequence[Tensor],
    logits: Sequence[Tensor],
    deltas: Sequence[Tensor],
    image_sizes: Sequence[tuple[int, int]],
    box_coder: BoxCoder,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_thresh: float,
    min_size: float,
) -> list[Proposals]:
    """Turn RPN outputs into proposals: per map top-k, decode, clip, min size, NMS, top-k.

    NMS runs on each feature map separately (one map for C4/VGG); the survivors of all maps
    are then ranked together and the best `post_nms_topk` kept (torchvision's FPN rule).

    Args:
        anchors: per map, (M_l, 4).
        logits: per map, (N, M_l) objectness logits.
        deltas: per map, (N, M_l, 4).
        image_sizes: per image, (h, w) before padding (boxes are clipped to it).
        box_coder: RPN box coder.
        pre_nms_topk: candidates kept per map before NMS.
        post_nms_topk: proposals kept per image after NMS.
        nms_thresh: NMS IoU threshold.
        min_size: boxes narrower or lower than this (input pixels) are dropped.

    Returns:
        per image, Proposals sorted by decreasing objectness.
    """
    boxes, scores, levels = [], [], []
    for level, (a, lg, d) in enumerate(zip(anchors, logits, deltas)):
        top, idx = lg.topk(topk_count(lg, pre_nms_topk), dim=1)  # (N, k)
        picked = torch.gather(d, 1, idx[..., None].expand(-1, -1, 4))  # (N, k, 4)
        decoded = box_coder.decode(picked.reshape(-1, 4).float(), a[idx.reshape(-1)])
        boxes.append(decoded.view(*idx.shape, 4))
        scores.append(top.float())
        levels.append(torch.full((idx.shape[1],), level, device=idx.device))
    all_boxes, all_scores, all_levels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels)
    proposals = []
    for image_boxes, image_logits, size in zip(all_boxes, all_scores, image_sizes):
        image_boxes = clip_boxes(image_boxes, size)
        keep = large_enough(image_boxes, min_size)
        image_boxes, image_logits, lvl = image_boxes[keep], image_logits[keep], all_levels[keep]
        probs = torch.sigmoid(image_logits)
        keep = batched_nms_top_k(image_boxes, probs, lvl, nms_thresh, post_nms_topk)
        proposals.append(Proposals(image_boxes[keep], image_logits[keep]))
    return proposals


class RPN(nn.Module):
    """The proposal stage: head, anchors, training losses and proposal selection.

    Args:
        head: the conv head.
        anchor_generator: anchors, one size list per input feature map.
        box_coder: deltas <-> boxes (weights 1, 1, 1, 1 as a rule).
        matcher: anchor labelling rule.
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: cap on positives in that sample.
        pre_nms_topk: (train, test) candidates per map before NMS.
        post_nms_topk: (train, test) proposals per image after NMS.
        nms_thresh: NMS IoU threshold.
        min_size: smallest proposal side kept (input pixels).
        loss_type: "smooth_l1" or "l1".
        smooth_l1_beta: smooth-L1 transition point.
        loss_weight: multiplier of both losses.
    """

    def __init__(
        self,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        box_coder: BoxCoder,
        matcher: Matcher,
        *,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_topk: tuple[int, int] = (12000, 6000),
        post_nms_topk: tuple[int, int] = (2000, 300),
        nms_thresh: float = 0.7,
        min_size: float = 0.0,
        loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 1.0 / 9,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_box_loss(loss_type)
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.loss_type = loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = loss_weight

    def forward(
        self, images: ImageBatch, features: Sequence[Tensor], targets: Sequence[Targets] | None
    ) -> tuple[list[Proposals], dict[str, Tensor]]:
        """Proposals for every image, and the RPN losses when targets are given.

        Args:
            images: the batch (its padded size gives the anchors' strides).
            features: the maps the RPN sees, each (N, C, H_l, W_l).
            targets: per image ground truth, or None.

        Returns:
            (per image Proposals, {"loss_rpn_cls", "loss_rpn_loc"} or {}).
        """
        logits, deltas = self.head(features)
        anchors = self.anchors(images.tensor, features)
        logits = [flatten_logits(x) for x in logits]  # (N, H*W*A) per map
        deltas = [flatten_deltas(x) for x in deltas]  # (N, H*W*A, 4) per map
        losses = {} if targets is None else self.losses(anchors, logits, deltas, targets)
        mode = 0 if self.training else 1
        proposals = select_proposals(
            anchors,
            [x.detach() for x in logits],
            [x.detach() for x in deltas],
            images.image_sizes,
            self.box_coder,
            self.pre_nms_topk[mode],
            self.post_nms_topk[mode],
            self.nms_thresh,
            self.min_size,
        )
        return proposals, losses

    def anchors(self, images: Tensor, features: Sequence[Tensor]) -> list[Tensor]:
        """Anchors per map; a map's stride is the padded input size // its size (torchvision)."""
        height, width = images.shape[-2:]
        grids = [(f.shape[-2], f.shape[-1]) for f in features]  # traced sizes in an ONNX export
        strides = [(height // h, width // w) for h, w in grids]
        return self.anchor_generator(grids, strides, images.device)

    def losses(
        self,
        anchors: list[Tensor],
        logits: list[Tensor],
        deltas: list[Tensor],
        targets: Sequence[Targets],
    ) -> dict[str, Tensor]:
        """Sample anchors and compute the weighted RPN losses."""
        all_anchors = torch.cat(anchors)
        labels, gt_boxes = label_and_sample_anchors(
            all_anchors, targets, self.matcher, self.batch_size_per_image, self.positive_fraction
        )
        losses = rpn_losses(
            all_anchors,
            torch.cat(logits, 1),
            torch.cat(deltas, 1),
            labels,
            gt_boxes,
            self.box_coder,
            self.loss_type,
            self.smooth_l1_beta,
            normalizer=self.batch_size_per_image * len(targets),
        )
        return {k: v * self.loss_weight for k, v in losses.items()}
