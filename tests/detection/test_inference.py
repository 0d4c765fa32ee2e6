"""detection.inference: the precision of inference, resolved from test.precision alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detection.inference import detect, inference_precision
from detection.modeling.faster_rcnn import DetectorOutput
from detection.structures import Detections, ImageBatch
from engine import amp
from engine.errors import UserError


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_fp32_is_fp32_on_every_device(device: str) -> None:
    # no solver.amp in the signature: a training setting cannot switch inference autocast on
    assert inference_precision("fp32", torch.device(device)) is None


def test_bf16_where_the_device_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inference_precision("bf16", torch.device("cuda")) == "bf16"  # resolved, not run
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: True)
    assert inference_precision("bf16", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"^test.precision: bf16 needs CUDA or a CPU with"):
        assert inference_precision("bf16", torch.device("cpu")) is None
    with pytest.raises(UserError, match=r"precision 'fp16' is not known; expected one of"):
        inference_precision("fp16", torch.device("cuda"))


class _Probe(nn.Module):
    """A detector stand-in that reports whether it ran under CPU autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.autocast: list[bool] = []

    def forward(self, images: ImageBatch, detect: bool = False) -> DetectorOutput:
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        none = torch.zeros(0, 4)
        return DetectorOutput({}, [Detections(none, none[:, 0], none[:, 0].long())])


@pytest.mark.parametrize(("dtype", "entered"), [(None, False), ("bf16", True)])
def test_detect_enters_autocast_for_the_resolved_dtype_only(dtype: str | None, entered: bool):
    probe = _Probe()
    images = ImageBatch(torch.zeros(1, 3, 8, 8), [(8, 8)], [(8, 8)], [(1.0, 1.0)], [False], [0])
    assert len(detect(probe, images, dtype)) == 1
    assert probe.autocast == [entered]
