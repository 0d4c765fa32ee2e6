"""detection.export: the ONNX graph gives the Predictor's detections (onnxruntime)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from detection import export
from detection.config import Config
from detection.data.transforms import resized_shape
from detection.modeling.build import build_model
from detection.modeling.ensemble import DetectorEnsemble
from detection.predictor import Predictor
from detection.structures import Detections
from engine.errors import UserError
from engine.images import decode_image


def small_config() -> Config:
    """The C4 ResNet-18 width-16 layout of configs/detection/raccoon_r18_c4.yaml, untrained."""
    cfg = Config()
    cfg.model.num_classes = 3
    cfg.model.backbone.name = "resnet18"
    cfg.model.backbone.base_width = 16
    cfg.model.backbone.weights = ""
    cfg.model.backbone.norm = "bn"
    cfg.model.anchors.sizes = [[32.0, 64.0, 128.0, 256.0]]
    cfg.model.rpn.post_nms_topk_test = 50
    cfg.model.roi_heads.pooler_type = "roi_align"
    cfg.model.roi_heads.pooler_sampling_ratio = 2
    cfg.input.min_size_test = 128
    cfg.input.max_size_test = 192
    return cfg


def small_detector_weights(folder: Path) -> Path:
    """``folder/model.pth``: an untrained `small_config` detector (seed 0) whose class scores
    are peaked, so the 0.05 score threshold keeps some detections."""
    torch.manual_seed(0)
    model = build_model(small_config(), load_backbone_weights=False)
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.mul_(100)
    path = folder / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor(small_config(), str(small_detector_weights(tmp_path_factory.mktemp("export"))))


def assert_same_detections(onnx: Detections, ours: Detections) -> None:
    """The torchvision-equivalence test's rule: same count; one to one, same label, box within
    0.01 px, score within 1e-4 (matched without regard to order: near-ties may swap)."""
    assert len(onnx) == len(ours) > 0
    same = (
        (onnx.labels[:, None] == ours.labels[None])
        & ((onnx.boxes[:, None] - ours.boxes[None]).abs().amax(dim=2) <= 0.01)
        & ((onnx.scores[:, None] - ours.scores[None]).abs() <= 1e-4)
    )  # (N, N)
    assert same.any(dim=1).all() and same.any(dim=0).all()
    assert onnx.labels.dtype == torch.int64 and onnx.boxes.dtype == torch.float32


def test_onnx_graph_gives_the_predictors_detections_at_two_sizes(
    predictor: Predictor, raccoon_photos: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    export.export_onnx(predictor, path)
    onnx = export.OnnxPredictor(path, predictor.cfg.input)
    assert [i.name for i in onnx.session.get_inputs()] == export.INPUT_NAMES
    sizes = set()
    for name in ("raccoon-110.jpg", "raccoon-150.jpg"):  # portrait and landscape
        image = decode_image(str(raccoon_photos / "images" / name))
        sizes.add(resized_shape(*image.shape[:2], 128, 192))
        assert_same_detections(onnx(image), predictor(image))
    assert sizes == {(191, 128), (128, 192)}  # traced at 128 x 128: the size is dynamic


def test_a_global_context_graph_gives_the_predictors_detections(
    raccoon_photos: Path, tmp_path: Path
) -> None:
    cfg = small_config()
    cfg.model.roi_heads.global_context = True
    torch.manual_seed(0)
    model = build_model(cfg, load_backbone_weights=False)
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.mul_(100)
    torch.save({"model": model.state_dict()}, tmp_path / "model.pth")
    predictor = Predictor(cfg, str(tmp_path / "model.pth"))
    export.export_onnx(predictor, tmp_path / "model.onnx")
    onnx = export.OnnxPredictor(tmp_path / "model.onnx", cfg.input)
    # a 191 x 128 input through a graph traced at 128 x 128: the whole-image RoI follows it
    image = decode_image(str(raccoon_photos / "images" / "raccoon-110.jpg"))
    assert_same_detections(onnx(image), predictor(image))


def test_boxes_map_back_to_the_original_image() -> None:
    # a 100 x 200 input resized from 50 x 100: halved, then clipped to x <= 100, y <= 50
    boxes = torch.tensor([[10.0, 20.0, 60.0, 80.0], [-4.0, 0.0, 210.0, 120.0]])
    out = export.to_original(boxes, (100, 200), torch.tensor([50, 100]))
    assert torch.equal(out, torch.tensor([[5.0, 10.0, 30.0, 40.0], [0.0, 0.0, 100.0, 50.0]]))


def test_refusals(predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=r"^--opset 11: expected 16..20$"):
        export.export_onnx(predictor, tmp_path / "m.onnx", opset=11)
    monkeypatch.setattr(export, "EXPORTABLE_ARCHS", ("vgg", "fpn"))
    with pytest.raises(UserError, match=r"model.arch 'c4' cannot be exported to ONNX"):
        export.export_onnx(predictor, tmp_path / "m.onnx")
    monkeypatch.setattr(export, "EXPORTABLE_ARCHS", ("c4",))
    monkeypatch.setattr(predictor, "model", DetectorEnsemble([predictor.model]))
    with pytest.raises(UserError, match=r"^an ensemble cannot be exported to ONNX"):
        export.export_onnx(predictor, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_test_time_views_are_refused(predictor: Predictor, tmp_path: Path) -> None:
    for key, value in (("pyramid_sizes", [96, 128]), ("flip", True)):
        cfg = copy.deepcopy(predictor.cfg)
        setattr(cfg.test, key, value)
        viewed = copy.copy(predictor)
        viewed.cfg = cfg
        with pytest.raises(
            UserError, match=r"^test.pyramid_sizes / test.flip .* cannot be exported"
        ):
            export.export_onnx(viewed, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
