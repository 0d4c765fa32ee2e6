"""The classification task (`resdet pretrain`): data, augmentation, training and testing.

config.py is its schema, data.py reads ImageNet-style folders and CIFAR-10 batches,
transforms.py holds the paper's augmentation and test views, evaluation.py the top-1 / top-5
errors, and task.py the ClassificationTask that engine.run trains and evaluates.
"""

# Exports: the names in _EXPORTS, each imported from its module on first use (engine.exports).
from engine.exports import exported_names, lazy_exports

_EXPORTS = {
    "backbones.pretrain.evaluation": ("count_topk_wrong", "evaluate", "score_views"),
    "backbones.pretrain.task": ("evaluate_weights", "pretrain"),
}
__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
