"""Helpers for the detection tool tests (a unique module name: conftest is not importable)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "detection" / "quickstart.yaml"


def tiny_overrides(voc_root: Path, output_dir: Path, **changes: object) -> list[str]:
    """--set overrides that shrink the quickstart config to seconds on a 2-core CPU."""
    settings: dict[str, object] = {
        "output_dir": output_dir,
        "device": "cpu",
        "deterministic": "true",
        "log_period": 1,
        "model.backbone.weights": "",
        "model.backbone.norm": "bn",  # from scratch: frozen BN is refused (nothing to freeze)
        "model.backbone.base_width": 8,
        "model.rpn.pre_nms_topk_train": 300,
        "model.rpn.post_nms_topk_train": 64,
        "model.rpn.pre_nms_topk_test": 200,
        "model.rpn.post_nms_topk_test": 32,
        "model.roi_heads.batch_size_per_image": 32,
        "data.train.root": voc_root,
        "data.test.root": voc_root,
        "data.num_workers": 0,
        "input.min_size_train": 96,
        "input.max_size_train": 128,
        "input.min_size_test": 96,
        "input.max_size_test": 128,
        "solver.ims_per_batch": 2,
        "solver.base_lr": 0.01,
        "solver.warmup_iters": 2,
        "solver.steps": "[100]",
        "solver.max_iter": 6,
        "solver.checkpoint_period": 3,
        "solver.amp": "false",  # the quickstart's bf16 applies only on some CPUs: test fp32
    }
    settings.update(changes)
    return ["--set", *(f"{key}={value}" for key, value in settings.items())]
