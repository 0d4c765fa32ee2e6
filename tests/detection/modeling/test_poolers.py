"""RoI level mapping by hand; pooling equal to torchvision's MultiScaleRoIAlign."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from detection.modeling import roi_cpu
from detection.modeling.poolers import ROIPooler, assign_levels, boxes_to_rois
from detection.modeling.roi_cpu import float32_nchw


def _square(side: float) -> list[float]:
    return [0.0, 0.0, side, side]


def test_canonical_level_mapping_by_hand() -> None:
    boxes = torch.tensor([_square(s) for s in (224, 112, 111, 448, 1000, 10, 223.99)])
    # floor(4 + log2(s / 224)): 4, 3, 2 (just below 112), 5, 6 -> 5, 0 -> 2, 3.99 + 1e-6 -> 3
    assert assign_levels(boxes, 2, 5).tolist() == [2, 1, 0, 3, 3, 0, 1]
    # another canonical pair: 56 px boxes on P2 with k0 = 2 and size 56
    assert assign_levels(boxes[:1], 2, 5, canonical_size=56, canonical_level=2).tolist() == [2]


def test_boxes_to_rois() -> None:
    rois = boxes_to_rois(
        [torch.tensor([_square(2)]), torch.zeros(0, 4), torch.tensor([_square(3)])]
    )
    assert rois.tolist() == [[0.0, *_square(2)], [2.0, *_square(3)]]


def test_single_map_roi_pool() -> None:
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(2, 4, 16, 16, generator=g)
    boxes = [torch.tensor([[0.0, 0.0, 100.0, 64.0]]), torch.tensor([[32.0, 16.0, 200.0, 250.0]])]
    pooled = ROIPooler(7, [16], "roi_pool")([feature], boxes)
    expected = roi_pool(feature, boxes, (7, 7), 1 / 16)
    assert pooled.shape == (2, 4, 7, 7) and torch.equal(pooled, expected)


def test_multi_level_equals_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    sizes = [(64, 64), (32, 32), (16, 16), (8, 8)]
    feats = [torch.randn(2, 8, h, w, generator=g) for h, w in sizes]
    xy = torch.rand(40, 2, generator=g) * 150
    side = 8 * 75 ** (torch.arange(40.0) / 39)  # 8 .. 600 px: every level
    wh = side[:, None] * (0.7 + 0.6 * torch.rand(40, 2, generator=g))
    boxes = torch.cat((xy, xy + wh), dim=1)
    per_image = [boxes[:25], boxes[25:]]
    ours = ROIPooler(7, [4, 8, 16, 32], "roi_align", sampling_ratio=2, aligned=False)
    tv = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)
    expected = tv(OrderedDict(zip(["p2", "p3", "p4", "p5"], feats)), per_image, [(256, 256)] * 2)
    torch.testing.assert_close(ours(feats, per_image), expected, rtol=0, atol=0)
    assert len(set(assign_levels(boxes, 2, 5).tolist())) == 4


def test_pooler_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="powers of two"):
        ROIPooler(7, [4, 16])
    with pytest.raises(ValueError, match="roi_pool"):
        ROIPooler(7, [16], "roi_max")


@pytest.mark.parametrize("pooler_type", ["roi_align", "roi_pool"])
def test_inference_pools_in_parallel_chunks_bit_for_bit(
    pooler_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    feature = torch.randn(2, 8, 40, 50)
    boxes = [torch.rand(150, 4) * 150, torch.rand(90, 4) * 150]
    boxes = [torch.cat((b[:, :2], b[:, :2] + b[:, 2:] / 3 + 1), 1) for b in boxes]  # x2 > x1
    pooler = ROIPooler(7, [4], pooler_type, sampling_ratio=2)
    executors: list[int] = []
    real_executor = roi_cpu._executor
    monkeypatch.setattr(roi_cpu, "_executor", lambda n: executors.append(n) or real_executor(n))
    with torch.no_grad():
        monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # 240 RoIs in 3 chunks
        split = pooler([feature], boxes)
        assert executors == [3]
        monkeypatch.setattr(roi_cpu, "MIN_ROIS_TO_SPLIT", 10**9)  # the plain call
        plain = pooler([feature], boxes)
    assert split.shape == (240, 8, 7, 7) and torch.equal(split, plain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
def test_float32_nchw_keeps_every_value(dtype: torch.dtype, channels_last: bool) -> None:
    x = torch.randn(2, 5, 70, 90).to(dtype)  # over 60 x 60: the blocked-transpose copy
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = float32_nchw(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert torch.equal(out, x.float())


def test_float32_nchw_passes_gradients_back() -> None:
    x = torch.randn(2, 5, 70, 90).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(2, 5, 70, 90)
    (float32_nchw(x) * weights).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, weights)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels_last", [True, False])
def test_training_roi_align_equals_torchvision(
    channels_last: bool, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three images (the last with no RoI), pooled per image in threads or in one call: the
    output of one torchvision roi_align call over the batch bit for bit, its gradient to float
    rounding (the backward is two matrix products), in the map's own layout."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(3, 8, 24, 32, generator=g)
    if channels_last:
        feature = feature.contiguous(memory_format=torch.channels_last)
    corners = torch.rand(9, 2, generator=g) * 60
    boxes = torch.cat([corners, corners + torch.rand(9, 2, generator=g) * 60 + 2], dim=1)
    per_image = [boxes[:5], boxes[5:], boxes[:0]]
    rois = boxes_to_rois(per_image)
    pooler = ROIPooler(7, [4], "roi_align", sampling_ratio=2)
    ours_input = feature.clone().requires_grad_()
    tv_input = feature.clone().requires_grad_()
    assert roi_cpu.TrainingRoIAlign.applies(ours_input, rois)
    ours = pooler([ours_input], per_image)
    tv = roi_align(tv_input, rois, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    assert torch.equal(ours, tv)
    weights = torch.randn(tv.shape, generator=g)
    (ours * weights).sum().backward()
    (tv * weights).sum().backward()
    assert ours_input.grad is not None and tv_input.grad is not None
    assert torch.allclose(ours_input.grad, tv_input.grad, rtol=1e-5, atol=1e-5)
    assert ours_input.grad.is_contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    assert ours_input.grad[2].abs().sum() == 0  # the image without RoIs


class _PoolerGraph(torch.nn.Module):
    """The FPN pooler with its four maps and one image's boxes as graph inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.pooler = ROIPooler(7, [4, 8, 16, 32], "roi_align", sampling_ratio=2)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *features, boxes = inputs
        return self.pooler(features, [boxes])


def test_the_onnx_graph_pools_any_number_of_rois_per_level() -> None:
    """Exported with one RoI on each of the four levels, the graph must still pool three RoIs
    on one level and none on the others (the R50-FPN export once failed there in
    onnxruntime: its index_put fixed the update's shape to one RoI)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io

    torch.manual_seed(0)
    model = _PoolerGraph()
    features = [torch.randn(1, 8, 64 >> k, 64 >> k) for k in range(4)]
    example = torch.tensor([[0, 0, 20, 20], [0, 0, 120, 120], [0, 0, 230, 230], [0, 0, 460, 460.0]])
    assert assign_levels(example, 2, 5).tolist() == [0, 1, 2, 3]  # one RoI per level
    names = ["p2", "p3", "p4", "p5", "boxes"]
    graph = io.BytesIO()
    torch.onnx.export(
        model, (*features, example), graph, dynamo=False, opset_version=20, input_names=names,
        dynamic_axes={"boxes": {0: "rois"}},
    )  # fmt: skip
    session = ort.InferenceSession(graph.getvalue(), providers=["CPUExecutionProvider"])
    for boxes in (
        torch.tensor([[0, 0, 20, 20], [0, 0, 30, 30], [1, 1, 25, 25.0]]),  # 3 on P2, 0 elsewhere
        example[[0, 0, 3]],  # 2 on P2, 0 on P3 and P4, 1 on P5
    ):
        feeds = dict(zip(names, (t.numpy() for t in (*features, boxes))))
        (pooled,) = session.run(None, feeds)
        expected = model(*features, boxes)
        torch.testing.assert_close(torch.from_numpy(pooled), expected, rtol=1e-5, atol=1e-5)
