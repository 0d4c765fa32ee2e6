"""detection.Predictor: image(s) in, Detections in original pixels out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from detection.config import Config, load_config
from detection.data.transforms import TestTransform, collate_images
from detection.inference import compile_trunks
from detection.modeling.build import build_model
from detection.modeling.ensemble import DetectorEnsemble
from detection.predictor import Predictor
from detection.structures import Detections
from engine import amp
from engine.errors import UserError


def small_config() -> Config:
    cfg = Config()
    cfg.model.num_classes = 4
    cfg.model.backbone.name = "resnet18"
    cfg.model.backbone.base_width = 16
    cfg.model.anchors.sizes = [[16.0, 32.0, 64.0]]
    cfg.model.rpn.post_nms_topk_test = 50
    cfg.input.min_size_test = 128
    cfg.input.max_size_test = 192
    cfg.test.score_thresh = 0.0  # random heads: keep every candidate
    cfg.test.ims_per_batch = 2
    return cfg


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(small_config())
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.mul_(100)
    path = tmp_path_factory.mktemp("predictor") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def _images(*sizes: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_single_image_in_original_pixels(checkpoint: Path) -> None:
    predictor = Predictor(small_config(), str(checkpoint))
    (image,) = _images((64, 80))  # resized x2 to 128 x 160
    det = predictor(image)
    assert isinstance(det, Detections) and 0 < len(det) <= 100
    assert det.boxes.device.type == "cpu" and det.labels.dtype == torch.int64
    assert (det.boxes[:, 2] <= 80).all() and (det.boxes[:, 3] <= 64).all()
    # the same detections, in network-input pixels, straight from the model
    t = TestTransform(
        128, 192, "BGR", predictor.cfg.input.pixel_mean, predictor.cfg.input.pixel_std
    )
    tensor, scale = t(image)
    assert scale == (2.0, 2.0)
    with torch.no_grad():
        raw = predictor.model(collate_images([tensor], [(64, 80)], [scale]), detect=True).detections
    assert raw is not None
    torch.testing.assert_close(det.boxes * 2, raw[0].boxes.clamp(min=0))
    torch.testing.assert_close(det.scores, raw[0].scores)


def test_list_in_list_out_batched(checkpoint: Path) -> None:
    predictor = Predictor(small_config(), str(checkpoint))
    images = _images((64, 80), (64, 80), (64, 80))
    one_by_one = [predictor(image) for image in images]
    batched = predictor(images)  # batches of 2 (test.ims_per_batch), then 1
    assert isinstance(batched, list) and len(batched) == 3
    for a, b in zip(one_by_one, batched):
        assert isinstance(a, Detections)
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
        assert torch.equal(a.labels, b.labels)
    assert Predictor(small_config(), str(checkpoint), batch_size=3)([]) == []


def test_a_list_of_weights_is_their_ensemble(checkpoint: Path) -> None:
    single = Predictor(small_config(), str(checkpoint))
    twice = Predictor(small_config(), [checkpoint, str(checkpoint)])
    assert isinstance(twice.model, DetectorEnsemble) and len(twice.model.members) == 2
    image = _images((64, 80))[0]
    a, b = single(image), twice(image)  # the same weights twice: the single model's output
    assert len(a) > 0 and torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(a.scores, b.scores)


def test_config_path_and_device_auto(checkpoint: Path, tmp_path: Path) -> None:
    cfg = small_config()
    text = {
        "model": {"num_classes": 4, "backbone": {"name": "resnet18", "base_width": 16},
                  "anchors": {"sizes": [[16.0, 32.0, 64.0]]}},
        "input": {"min_size_test": 128, "max_size_test": 192},
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(text))
    predictor = Predictor(str(tmp_path / "cfg.yaml"), str(checkpoint), device="auto")
    assert predictor.cfg.model.anchors.sizes == cfg.model.anchors.sizes
    assert predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bad_images_are_user_errors(checkpoint: Path) -> None:
    predictor = Predictor(small_config(), str(checkpoint))
    with pytest.raises(UserError, match="uint8"):
        predictor(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(UserError, match=r"\(H, W, 3\)"):
        predictor(np.zeros((32, 32), np.uint8))
    with pytest.raises(UserError, match="does not fit"):
        cfg = small_config()
        cfg.model.arch = "fpn"
        cfg.model.rpn.in_features = ["p2", "p3", "p4", "p5", "p6"]
        cfg.model.anchors.sizes = [[8.0], [16.0], [32.0], [64.0], [128.0]]
        Predictor(cfg, str(checkpoint))


def test_precision_from_the_config_or_the_argument(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: True)
    cfg = small_config()
    cfg.test.precision = "bf16"
    predictor = Predictor(cfg, str(checkpoint))
    assert predictor.amp == "bf16"
    assert predictor.model.backbone.stem.conv1.weight.dtype == torch.bfloat16  # cast once
    det = predictor(_images((64, 80))[0])
    assert isinstance(det, Detections) and det.boxes.dtype == torch.float32
    assert Predictor(cfg, str(checkpoint), precision="fp32").amp is None
    with pytest.raises(UserError, match=r"precision 'fp16' is not known; expected one of"):
        Predictor(small_config(), str(checkpoint), precision="fp16")
    with pytest.raises(UserError, match=r"test.precision"):
        load_config(None, ["test.precision=fp16"])


def test_bf16_on_a_cpu_without_it_warns_and_runs_fp32(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"test.precision: bf16 needs CUDA or a CPU with"):
        predictor = Predictor(small_config(), str(checkpoint), precision="bf16")
    assert predictor.amp is None
    assert predictor.model.backbone.stem.conv1.weight.dtype == torch.float32


def test_detection_exports_predictor_lazily() -> None:
    code = (
        "import sys, detection; assert 'detection.predictor' not in sys.modules; "
        "assert 'torch' not in sys.modules; "
        "from detection.predictor import Predictor; assert detection.Predictor is Predictor"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_bf16(checkpoint: Path) -> None:
    cfg = small_config()
    cfg.test.precision = "bf16"
    predictor = Predictor(cfg, str(checkpoint), device="cuda")
    reference = Predictor(small_config(), str(checkpoint))
    (image,) = _images((64, 80))
    det, ref = predictor(image), reference(image)
    assert isinstance(det, Detections) and isinstance(ref, Detections)
    assert det.boxes.device.type == "cpu" and len(det) > 0
    # bf16 autocast: the best detection agrees with the fp32 CPU one to a pixel or so
    torch.testing.assert_close(det.boxes[0], ref.boxes[0], atol=2.0, rtol=0)


@pytest.mark.slow
def test_compiled_trunks_detect_the_same(checkpoint: Path) -> None:
    # test.compile: torch.compile of the backbone (and FPN), numerics up to float rounding
    cfg = small_config()
    plain = Predictor(cfg, checkpoint)
    cfg.test.compile = True
    compiled = Predictor(cfg, checkpoint)
    assert compiled.model.state_dict().keys() == plain.model.state_dict().keys()
    (image,) = _images((100, 130))
    expected, got = plain(image), compiled(image)
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.boxes, expected.boxes, atol=1e-2, rtol=1e-4)
    torch.testing.assert_close(got.scores, expected.scores, atol=1e-4, rtol=1e-4)


def test_compiling_an_fpn_detector_keeps_its_modules_and_keys() -> None:
    cfg = Config()
    cfg.model.arch, cfg.model.backbone.name, cfg.model.backbone.weights = "fpn", "resnet18", ""
    cfg.model.anchors.sizes = [[32.0], [64.0], [128.0], [256.0], [512.0]]
    cfg.model.rpn.in_features = ["p2", "p3", "p4", "p5", "p6"]
    cfg.model.roi_heads.pooler_type, cfg.model.roi_heads.pooler_resolution = "roi_align", 7
    model = build_model(cfg, load_backbone_weights=False)
    keys, fpn = model.state_dict().keys(), model.fpn
    compile_trunks(model)  # lazy: nothing compiles before a forward
    assert model.fpn is fpn and model.state_dict().keys() == keys
    assert "forward_features" in vars(model.backbone)  # the compiled wrapper, per instance
