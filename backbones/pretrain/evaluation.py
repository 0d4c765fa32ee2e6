"""Classification testing: top-1 / top-5 error over one or many views per image.

A test mode (``center``, ``10crop``, ``multiscale``) turns each image into views
(``transforms.eval_views``); :func:`score_views` averages the softmax over an image's views,
:func:`evaluate` counts the errors on every rank's shard and sums them over ranks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from backbones.pretrain.data import EvalDataset, collate_eval
from backbones.pretrain.readers import ClassificationData
from backbones.pretrain.transforms import ViewTransform
from engine import distributed as dist
from engine import threads
from engine.amp import autocast
from engine.metrics import Progress
from engine.stops import StopSafeLoader


def score_views(model: nn.Module, views: list[list[Tensor]], device: torch.device) -> Tensor:
    """Class probabilities per image, averaged over all of its views.

    Views of the same size (across the batch) go through the network together; the network
    must accept any input size (global average pooling before the classifier).

    Args:
        views: per image, a list of (V, 3, h, w) tensors (one per size).

    Returns:
        (B, K) mean softmax over each image's views.
    """
    groups: dict[tuple[int, int], list[tuple[int, Tensor]]] = defaultdict(list)
    for i, per_size in enumerate(views):
        for v in per_size:
            groups[(v.shape[-2], v.shape[-1])].append((i, v))
    sums: Tensor | None = None
    counts = torch.zeros(len(views), device=device)
    for items in groups.values():
        owners = torch.cat([torch.full((len(v),), i) for i, v in items]).to(device)
        probs = model(torch.cat([v for _, v in items]).to(device)).float().softmax(1)  # (sum V, K)
        if sums is None:
            sums = torch.zeros(len(views), probs.shape[1], device=device)
        sums.index_add_(0, owners, probs)
        counts.index_add_(0, owners, torch.ones_like(owners, dtype=torch.float32))
    if sums is None:
        raise ValueError("score_views needs at least one view")
    return sums / counts[:, None]


def count_topk_wrong(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many labels are not among the k highest scores, per k (k capped at K classes).

    Args:
        scores: (N, K); labels: (N,) int64.
    """
    order = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # (N, k_max)
    hits = order == labels[:, None]
    return [int((~hits[:, : min(k, scores.shape[1])].any(1)).sum()) for k in ks]


def evaluate(
    model: nn.Module,
    data: ClassificationData,
    views: dict[str, ViewTransform],
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
    amp_dtype: str | None = None,
) -> dict[str, dict[str, float]]:
    """Top-1 / top-5 error of ``model`` on ``data`` for each test mode (all ranks take part).

    Each rank scores every world_size-th image; the counts are summed over ranks.

    Returns:
        mode -> {"top1_error", "top5_error" (fractions), "images", "skipped_images"}.
    """
    net = dist.unwrap(model).eval()
    shard = list(range(dist.get_rank(), len(data), dist.get_world_size()))
    results: dict[str, dict[str, float]] = {}
    for mode, transform in views.items():
        per_batch = max(1, batch_size // {"center": 1, "10crop": 10}.get(mode, 16))
        loader = StopSafeLoader(
            Subset(EvalDataset(data, transform), shard),
            batch_size=per_batch,
            num_workers=num_workers,
            collate_fn=collate_eval,
        )
        counts = np.zeros(4, np.int64)  # top-1 wrong, top-5 wrong, images, skipped
        progress = Progress(len(shard), f"eval {mode}", enabled=dist.is_main())
        with torch.no_grad(), autocast(device.type, amp_dtype):
            for batch in loader:
                counts[3] += len(batch.bad)
                if batch.views:
                    threads.adjust()
                    scores = score_views(net, batch.views, device)
                    counts[:2] += count_topk_wrong(scores, batch.labels.to(device))
                    counts[2] += len(batch.labels)
                progress.update(len(batch.labels) + len(batch.bad))
        progress.close()
        wrong1, wrong5, n, skipped = np.sum(dist.all_gather_object(counts), axis=0).tolist()
        results[mode] = {
            "top1_error": wrong1 / max(n, 1),
            "top5_error": wrong5 / max(n, 1),
            "images": n,
            "skipped_images": skipped,
        }
    return results
