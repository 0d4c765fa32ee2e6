"""The classification task (`resdet pretrain`): data, augmentation, training and testing.

config.py is its schema, data.py reads ImageNet-style folders and CIFAR-10 batches,
transforms.py holds the paper's augmentation and test views, evaluation.py the top-1 / top-5
errors, and task.py the ClassificationTask that engine.run trains and evaluates.
"""

from backbones.pretrain.evaluation import count_topk_wrong, evaluate, score_views
from backbones.pretrain.task import evaluate_weights, pretrain

__all__ = [
    "count_topk_wrong",
    "evaluate",
    "evaluate_weights",
    "pretrain",
    "score_views",
]
