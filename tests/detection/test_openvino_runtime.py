"""OpenVINO and onnxruntime behind the Predictor: the exported graph gives its detections."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_export import assert_same_detections, small_config, small_detector_weights
from torchvision.ops import box_iou

from detection import openvino_runtime
from detection.predictor import Predictor
from engine.amp import cpu_has_native_bf16
from engine.errors import UserError
from engine.images import decode_image

PHOTOS = ("raccoon-110.jpg", "raccoon-150.jpg")  # portrait and landscape


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_detector_weights(tmp_path_factory.mktemp("openvino"))


@pytest.fixture(scope="module")
def predictor(weights: Path) -> Predictor:
    return Predictor(small_config(), str(weights))


@pytest.fixture(scope="module")
def ir(predictor: Predictor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ir") / "sub" / "detector.xml"
    openvino_runtime.export_openvino(predictor, out)
    return out


def test_the_ir_at_fp32_gives_the_predictors_detections(
    predictor: Predictor, ir: Path, raccoon_photos: Path
) -> None:
    assert sorted(p.name for p in ir.parent.iterdir()) == ["detector.bin", "detector.xml"]
    ov = openvino_runtime.OpenvinoPredictor(ir, predictor.cfg.input, threads=2)
    assert ov.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    for name in PHOTOS:
        image = decode_image(str(raccoon_photos / "images" / name))
        assert_same_detections(ov(image), predictor(image))


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="needs a CPU with native bf16")
def test_the_ir_at_bf16_is_close_to_fp32(
    predictor: Predictor, ir: Path, raccoon_photos: Path
) -> None:
    """Top scores within 0.05; each of fp32's top 5 has a bf16 box of its class at IoU >= 0.5
    (the bf16 test of test_torchvision_equivalence.py)."""
    ov = openvino_runtime.OpenvinoPredictor(ir, predictor.cfg.input, precision="bf16")
    assert str(ov.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    for name in PHOTOS:
        image = decode_image(str(raccoon_photos / "images" / name))
        fp32, bf16 = predictor(image), ov(image)
        k = min(len(fp32), len(bf16), 10)
        assert k > 0
        assert (bf16.scores[:k] - fp32.scores[:k]).abs().max() <= 0.05
        iou = box_iou(fp32.boxes[:5], bf16.boxes) * (fp32.labels[:5, None] == bf16.labels[None])
        assert (iou.amax(dim=1) >= 0.5).all()


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_predictor_runtimes_give_the_torch_detections(
    predictor: Predictor, weights: Path, raccoon_photos: Path, runtime: str
) -> None:
    graph = Predictor(small_config(), str(weights), runtime=runtime)
    images = [decode_image(str(raccoon_photos / "images" / name)) for name in PHOTOS]
    for ours, theirs in zip(predictor(images), graph(images)):
        assert_same_detections(theirs, ours)
    assert graph.class_names == predictor.class_names


def test_one_line_errors(
    predictor: Predictor, weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config()
    missing = tmp_path / "missing.xml"
    with pytest.raises(UserError, match=rf"^{missing}: no such file \(an OpenVINO IR: "):
        openvino_runtime.OpenvinoPredictor(missing, cfg.input)
    with pytest.raises(UserError, match=r"^runtime 'tensorrt' is not known; expected one of"):
        Predictor(cfg, str(weights), runtime="tensorrt")
    with pytest.raises(UserError, match=r"^runtime 'openvino' runs on the CPU, not on cuda"):
        Predictor(cfg, str(weights), runtime="openvino", device="cuda")
    with pytest.raises(UserError, match=r"^runtime onnxruntime runs fp32 only, not bf16$"):
        Predictor(cfg, str(weights), runtime="onnxruntime", precision="bf16")
    with pytest.raises(UserError, match=r"^--out .*m.onnx: an OpenVINO IR is written as a .xml"):
        openvino_runtime.export_openvino(predictor, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    with pytest.raises(
        UserError, match=r"^OpenVINO is not installed: pip install 'resdet\[export\]'$"
    ):
        Predictor(cfg, str(weights), runtime="openvino")
    assert list(tmp_path.iterdir()) == []
