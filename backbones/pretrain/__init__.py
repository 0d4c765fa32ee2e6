"""The classification stage (`resdet pretrain`): data, augmentation, training and testing.

data.py reads ImageNet-style folders and CIFAR-10 batches; transforms.py holds the paper's
augmentation and test views; engine.py wires them to the shared training engine.
"""

from backbones.pretrain.task import (
    build_classifier,
    count_topk_wrong,
    evaluate,
    evaluate_weights,
    pretrain,
    score_views,
)

__all__ = [
    "build_classifier",
    "count_topk_wrong",
    "evaluate",
    "evaluate_weights",
    "pretrain",
    "score_views",
]
