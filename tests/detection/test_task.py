"""detection.task: what is refused before a run starts; what one evaluation reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import engine.io
from detection import inference
from detection.config import Config, load_config
from detection.data.synthetic import write_coco_dataset
from detection.modeling.build import build_model
from detection.modeling.faster_rcnn import DetectorOutput, FasterRCNN
from detection.task import DetectionTask, check_norm_can_train, evaluate_weights
from engine import amp
from engine.errors import UserError
from engine.io import read_text


def config(out: Path, **sets: str):
    return load_config(None, [f"output_dir={out}", *(f"{k}={v}" for k, v in sets.items())])


def test_frozen_bn_needs_backbone_weights_or_a_checkpoint_to_resume(tmp_path: Path):
    scratch = config(tmp_path, **{"model.backbone.norm": "frozen_bn"})
    assert scratch.model.backbone.weights == ""
    with pytest.raises(UserError, match=r"^model\.backbone\.norm is frozen_bn .*norm=bn"):
        check_norm_can_train(scratch, resume=False)
    with pytest.raises(UserError, match="frozen_bn"):  # --resume, but nothing to resume from
        check_norm_can_train(scratch, resume=True)
    (tmp_path / "checkpoint_10.pth").write_bytes(b"")  # resume reads the weights from it
    check_norm_can_train(scratch, resume=True)
    with pytest.raises(UserError, match="frozen_bn"):  # a new run ignores the checkpoint
        check_norm_can_train(scratch, resume=False)


@pytest.mark.parametrize(
    "sets",
    [{"model.backbone.norm": "bn"}, {"model.backbone.norm": "syncbn"},
     {"model.backbone.norm": "frozen_bn", "model.backbone.weights": "backbone.pth"}],
)  # fmt: skip
def test_trainable_norms_and_pretrained_frozen_bn_pass(tmp_path: Path, sets: dict[str, str]):
    check_norm_can_train(config(tmp_path, **sets), resume=False)


@pytest.fixture(scope="module")
def coco_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated COCO tree (images/, annotations/instances_<split>.json), 12 images."""
    out = tmp_path_factory.mktemp("coco")
    write_coco_dataset(str(out), num_images=12, seed=2, size=64)
    return out


def coco_eval_config(coco: Path, out: Path) -> Config:
    """A narrow C4 detector scored on the generated COCO test split, class names from it."""
    return load_config(None, [
        f"output_dir={out}", "device=cpu", "data.num_workers=0", "model.num_classes=5",
        "model.backbone.name=resnet18", "model.backbone.base_width=8",
        "model.backbone.weights=", "model.backbone.norm=bn",
        "model.anchors.sizes=[[16, 32, 64]]", "model.rpn.post_nms_topk_test=16",
        "data.test.format=coco", f"data.test.root={coco / 'images'}",
        f"data.test.ann_file={coco / 'annotations' / 'instances_val.json'}",
        "input.min_size_test=64", "input.max_size_test=96", "test.metrics=[voc07, coco]",
    ])  # fmt: skip


def test_one_evaluation_parses_the_coco_annotations_once(
    coco_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = coco_eval_config(coco_split, tmp_path / "eval")
    assert not cfg.data.class_names  # taken from the JSON's categories: one more reader
    torch.manual_seed(0)
    DetectionTask(cfg).save_final(tmp_path, build_model(cfg), 0)
    ann_file = Path(cfg.data.test.ann_file).resolve()
    reads: list[str] = []

    def counting_read_text(path, *args, **kwargs):  # every JSON reader of engine.io's
        if Path(path).resolve() == ann_file:
            reads.append(str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(engine.io, "read_text", counting_read_text)
    results = evaluate_weights(cfg, str(tmp_path / "model_final.pth"))
    assert set(results) >= {"voc07", "coco"} and results["num_images"] == 2
    assert len(reads) == 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_evaluation_runs_at_test_precision_resolved_once(
    coco_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    # solver.amp (training's) on, on a CPU that could run it: inference still follows
    # test.precision alone, resolved once per evaluation
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: True)
    cfg = coco_eval_config(coco_split, tmp_path / "eval")
    cfg.solver.amp, cfg.solver.amp_dtype, cfg.test.precision = True, "bf16", precision
    DetectionTask(cfg).save_final(tmp_path, build_model(cfg), 0)
    resolved: list[str] = []
    monkeypatch.setattr(inference, "resolve_amp", lambda *a: resolved.append(a[0]) or a[0])
    seen: list[tuple[bool, torch.dtype]] = []

    def forward_hook(module: nn.Module, args: object, output: DetectorOutput) -> None:
        if isinstance(module, FasterRCNN) and output.detections:
            seen.append((torch.is_autocast_enabled("cpu"), output.detections[0].scores.dtype))

    with nn.modules.module.register_module_forward_hook(forward_hook):
        evaluate_weights(cfg, str(tmp_path / "model_final.pth"))
    assert resolved == (["bf16"] if precision == "bf16" else [])
    assert seen and set(seen) == {(precision == "bf16", torch.float32)}


def test_bf16_without_native_support_warns_once_per_evaluation(
    coco_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: False)
    cfg = coco_eval_config(coco_split, tmp_path / "eval")
    cfg.test.precision = "bf16"
    DetectionTask(cfg).save_final(tmp_path, build_model(cfg), 0)
    with pytest.warns(UserWarning) as warned:
        evaluate_weights(cfg, str(tmp_path / "model_final.pth"))
    assert [str(w.message) for w in warned if "precision" in str(w.message)] == [
        "test.precision: bf16 needs CUDA or a CPU with AVX512-BF16 / AMX; running in fp32 on cpu"
    ]
