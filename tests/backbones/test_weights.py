"""load_weights: third-party weights give their own nets' logits; error messages.

torchvision and MSRA weights are checked against torchvision's nets, pytorch_resnet_cifar10
(akamaster) checkpoints against a re-implementation of that code's ResNet (`AkamasterResNet`).

Layout note: MSRA's own ResNets use the stride on the first 1x1 (`stride_in_1x1=True`). Here the
MSRA blobs are made from a torchvision model (stride on the 3x3), so the model they load into is
built with torchvision's layout (`stride_in_1x1=False`): the blob names and the layout are
independent, and only the layout has to match the network the weights came from.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from backbones import build_backbone, cifar_resnet, load_weights
from backbones.weights import detect_format, read_source
from engine.errors import UserError

EPS = 1e-5


def msra_resnet_blobs(tv: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """A torchvision ResNet state dict under Detectron's blob names, BN folded to scale/bias."""
    blobs: dict[str, np.ndarray] = {}

    def put_bn(tv_prefix: str, blob_prefix: str) -> None:
        scale = tv[f"{tv_prefix}.weight"] / (tv[f"{tv_prefix}.running_var"] + EPS).sqrt()
        shift = tv[f"{tv_prefix}.bias"] - tv[f"{tv_prefix}.running_mean"] * scale
        blobs[f"{blob_prefix}_bn_s"], blobs[f"{blob_prefix}_bn_b"] = scale.numpy(), shift.numpy()

    blobs["conv1_w"] = tv["conv1.weight"].numpy()
    put_bn("bn1", "res_conv1")
    for key in tv:
        match = re.fullmatch(r"layer(\d)\.(\d+)\.(conv\d|downsample\.0)\.weight", key)
        if match:
            stage, block, layer = int(match[1]) + 1, match[2], match[3]
            branch = "branch1" if layer == "downsample.0" else "branch2" + "abc"[int(layer[-1]) - 1]
            name = f"res{stage}_{block}_{branch}"
            blobs[f"{name}_w"] = tv[key].numpy()
            norm = key.replace("conv", "bn").replace("downsample.0", "downsample.1")
            put_bn(norm.removesuffix(".weight"), name)
    blobs["fc1000_w"], blobs["fc1000_b"] = tv["fc.weight"].numpy(), tv["fc.bias"].numpy()
    blobs["conv1_w_momentum"] = np.zeros(1, np.float32)  # Caffe2 solver state: ignored
    return blobs


def msra_vgg_blobs(tv: dict[str, Tensor], features: nn.Sequential) -> dict[str, np.ndarray]:
    """A torchvision VGG state dict under Caffe's names (conv1_1_w, ..., fc6_w, fc8_b)."""
    blobs, block, j = {}, 1, 0
    for i, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            block, j = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            j += 1
            blobs[f"conv{block}_{j}_w"] = tv[f"features.{i}.weight"].numpy()
            blobs[f"conv{block}_{j}_b"] = tv[f"features.{i}.bias"].numpy()
    for caffe, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        blobs[f"{caffe}_w"] = tv[f"classifier.{index}.weight"].numpy()
        blobs[f"{caffe}_b"] = tv[f"classifier.{index}.bias"].numpy()
    return blobs


def write_pkl(path: Path, blobs: dict[str, np.ndarray]) -> Path:
    with path.open("wb") as f:
        pickle.dump({"blobs": blobs}, f)
    return path


def logits(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_torchvision_and_msra_resnet50(
    tmp_path: Path, randomize_norms: Callable[..., nn.Module], images: torch.Tensor
) -> None:
    torch.manual_seed(0)
    tv = randomize_norms(torchvision.models.resnet50(weights=None)).eval()
    expected = logits(tv, images)
    torch.save(tv.state_dict(), tmp_path / "resnet50.pth")

    ours = build_backbone("resnet50")  # torchvision's layout: stride on the 3x3
    report = load_weights(ours, tmp_path / "resnet50.pth")
    assert (report.format, report.ok, report.classifier_loaded) == ("torchvision", True, True)
    assert (logits(ours, images) - expected).abs().max() < 1e-5

    pkl = write_pkl(tmp_path / "R-50.pkl", msra_resnet_blobs(tv.state_dict()))
    for norm in ("frozen_bn", "bn"):
        msra = build_backbone("resnet50", norm=norm)
        assert load_weights(msra, pkl).format == "msra"
        assert (logits(msra, images) - expected).abs().max() < 1e-5, norm
    # the folded affine loads with mean 0, var 1 - eps
    assert torch.equal(msra.stem.bn1.running_mean, torch.zeros(64))
    assert torch.allclose(msra.stem.bn1.running_var, torch.full((64,), 1 - EPS))


def test_torchvision_resnet101_state_dict(
    randomize_norms: Callable[..., nn.Module], images: torch.Tensor
) -> None:
    torch.manual_seed(0)
    tv = randomize_norms(torchvision.models.resnet101(weights=None)).eval()
    ours = build_backbone("resnet101", norm="frozen_bn")
    assert load_weights(ours, tv.state_dict()).ok
    assert (logits(ours, images) - logits(tv, images)).abs().max() < 1e-5


def test_torchvision_and_msra_vgg16(tmp_path: Path, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.vgg16(weights=None).eval()
    expected = logits(tv, images)
    assert expected.abs().max() > 1e-3
    torch.save(tv.state_dict(), tmp_path / "vgg16.pth")
    blobs = msra_vgg_blobs(tv.state_dict(), tv.features)
    del tv

    ours = build_backbone("vgg16")
    assert load_weights(ours, tmp_path / "vgg16.pth").format == "torchvision"
    assert (logits(ours, images) - expected).abs().max() < 1e-5

    nn.init.zeros_(ours.fc67[0].weight)  # loading must overwrite everything again
    report = load_weights(ours, write_pkl(tmp_path / "VGG16.pkl", blobs))
    assert (report.format, report.ok) == ("msra", True)
    assert (logits(ours, images) - expected).abs().max() < 1e-5


@pytest.fixture
def small() -> nn.Module:
    return build_backbone("resnet18", base_width=16)


@pytest.fixture
def state(small: nn.Module) -> dict[str, Tensor]:
    torch.manual_seed(3)
    return build_backbone("resnet18", base_width=16).state_dict()


def test_own_checkpoint_wrapped_and_prefixed(
    tmp_path: Path, small: nn.Module, state: dict[str, Tensor]
) -> None:
    wrapped = {"model": {f"module.{k}": v for k, v in state.items()}, "iteration": 7}
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    report = load_weights(small, tmp_path / "checkpoint.pth")
    assert report.format == "resdet" and report.ok
    assert all(torch.equal(v, state[k]) for k, v in small.state_dict().items())


def test_checkpoint_with_numpy_state_needs_trust(
    tmp_path: Path, small: nn.Module, state: dict[str, Tensor]
) -> None:
    torch.save({"model": state, "numpy_rng": np.zeros(3)}, tmp_path / "last.pth")
    with pytest.raises(UserError, match=r"last.pth' holds more than tensors .*--trust-weights"):
        load_weights(small, tmp_path / "last.pth")
    assert load_weights(small, tmp_path / "last.pth", trust=True).ok


def test_missing_key_message(tmp_path: Path, small: nn.Module, state: dict[str, Tensor]) -> None:
    del state["res3.0.conv1.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError) as info:
        load_weights(small, tmp_path / "bad.pth")
    message = str(info.value)
    assert "\n" not in message
    assert f"weights '{tmp_path / 'bad.pth'}' (resdet format) does not fit ResNet" in message
    assert message.endswith("1 missing key: res3.0.conv1.weight")


def test_unexpected_key_message(small: nn.Module, state: dict[str, Tensor]) -> None:
    state["res2.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(
        UserError, match=r"state dict .*: 1 unexpected key: res2\.0\.extra\.weight$"
    ):
        load_weights(small, state)


def test_shape_mismatch_message_and_skip_classifier(small: nn.Module) -> None:
    torch.manual_seed(4)
    ten = build_backbone("resnet18", base_width=16, num_classes=10).state_dict()
    with pytest.raises(UserError) as info:
        load_weights(small, ten)
    assert str(info.value).endswith(
        "2 shape mismatches: fc.weight: checkpoint (10, 128) vs model (1000, 128), "
        "fc.bias: checkpoint (10,) vs model (1000,) "
        "(skip_classifier=True keeps the model's own classifier)"
    )
    fc_before = small.fc.weight.clone()
    report = load_weights(small, ten, skip_classifier=True)
    assert report.ok and not report.classifier_loaded
    assert torch.equal(small.fc.weight, fc_before)
    assert torch.equal(small.res5[1].conv2.weight, ten["res5.1.conv2.weight"])


def test_long_lists_are_truncated(small: nn.Module, state: dict[str, Tensor]) -> None:
    res5 = [k for k in state if k.startswith("res5.") and "num_batches" not in k]
    # 4 convs + the projection, each followed by a norm (weight, bias, mean, var)
    assert len(res5) == 5 + 5 * 4
    for key in res5:
        del state[key]
    with pytest.raises(
        UserError, match=r": 25 missing keys: res5\.0\.conv1\.weight, .* and 20 more$"
    ):
        load_weights(small, state)


def test_non_strict_returns_the_report(small: nn.Module, state: dict[str, Tensor]) -> None:
    del state["stem.conv1.weight"]
    state["fc.weight"] = torch.zeros(3, 3)
    state["extra"] = torch.zeros(1)
    before = small.stem.conv1.weight.clone()
    report = load_weights(small, state, strict=False)
    assert report.missing == ["stem.conv1.weight"]
    assert report.unexpected == ["extra"]
    assert report.shape_mismatch == ["fc.weight: checkpoint (3, 3) vs model (1000, 128)"]
    assert torch.equal(small.stem.conv1.weight, before)
    assert torch.equal(small.res2[0].conv1.weight, state["res2.0.conv1.weight"])


def test_backbone_only_checkpoint(small: nn.Module, state: dict[str, Tensor]) -> None:
    features = {k: v for k, v in state.items() if not k.startswith("fc.")}
    fc_before = small.fc.weight.clone()
    report = load_weights(small, features)
    assert report.ok and not report.classifier_loaded
    assert torch.equal(small.fc.weight, fc_before)


def test_skip_leaves_the_named_modules_as_initialised() -> None:
    # the VGG control of the miniature: pretrained convolutions, fc6/fc7 at their init
    torch.manual_seed(0)
    pretrained = build_backbone("vgg16_bn", base_width=16).state_dict()
    torch.manual_seed(1)
    model = build_backbone("vgg16_bn", base_width=16)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_weights(model, pretrained, skip=["fc67"])
    assert report.ok and report.left_as_initialised == ["fc67"]
    assert "fc67 left as initialised" in report.summary()
    for key, value in model.state_dict().items():
        source = init if key.startswith("fc67.") else pretrained
        assert torch.equal(value, source[key]), key
    assert any(k.startswith("fc67.") for k in init)


def test_skip_matches_whole_name_parts(small: nn.Module, state: dict[str, Tensor]) -> None:
    before = small.state_dict()["res5.1.conv1.weight"].clone()  # res5.1 kept, res5.0 loaded
    load_weights(small, state, skip=["res5.1"])
    assert torch.equal(small.state_dict()["res5.1.conv1.weight"], before)
    assert torch.equal(small.state_dict()["res5.0.conv1.weight"], state["res5.0.conv1.weight"])
    vgg = build_backbone("vgg16_bn", base_width=16)
    with pytest.raises(UserError, match=r"'fc6' \(model.backbone.weights_skip\) names no param"):
        load_weights(vgg, vgg.state_dict(), skip=["fc6"])  # fc6 is not fc67


def test_bad_sources(tmp_path: Path, small: nn.Module, state: dict[str, Tensor]) -> None:
    with pytest.raises(UserError, match=r"weights file '.*nope.pth' does not exist"):
        load_weights(small, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"junk.pth' (is not a readable checkpoint|holds more)"):
        load_weights(small, tmp_path / "junk.pth")
    with pytest.raises(UserError, match="format 'caffe' is not known"):
        load_weights(small, state, format="caffe")
    with pytest.raises(UserError, match=r"torchvision weights exist .* not CifarResNet"):
        load_weights(build_backbone("resnet20"), state, format="torchvision")


def test_detect_format() -> None:
    assert detect_format({"conv1.weight": 0, "layer1.0.conv1.weight": 0}) == "torchvision"
    assert detect_format({"features.0.weight": 0, "classifier.6.bias": 0}) == "torchvision"
    assert detect_format({"conv1_w": 0, "res2_0_branch2a_w": 0}) == "msra"
    assert detect_format({"stem.conv1.weight": 0, "fc.bias": 0}) == "resdet"
    assert detect_format({"features.0.weight": 0, "fc67.0.weight": 0}) == "resdet"


# ----------------------------------------------------------------- pytorch_resnet_cifar10
class AkamasterBlock(nn.Module):
    """pytorch_resnet_cifar10's BasicBlock, option A: its LambdaLayer's pad, written inline.

    `pad_before=False` appends all the zero channels after the input's: the placement our
    PadShortcut used to have, kept here to show that it computes another function.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, pad_before: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        before = planes // 4 if pad_before else 0
        self.channel_pad = (before, planes // 2 - before)

    def shortcut(self, x: Tensor) -> Tensor:
        if not self.downsample:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, *self.channel_pad))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class AkamasterResNet(nn.Module):
    """pytorch_resnet_cifar10's ResNet (resnet20 = n 3): conv1/bn1, layer1..3, linear."""

    def __init__(self, n: int, pad_before: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(AkamasterBlock(in_planes, planes, stride, pad_before))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def save_akamaster(
    path: Path, net: nn.Module, extra_state: dict[str, Tensor] | None = None
) -> Path:
    """Their trainer's checkpoint: DataParallel's `module.` names, best_prec1 beside them.

    Their checkpoints predate BN's num_batches_tracked, so it is left out like theirs.
    """
    state = {f"module.{k}": v for k, v in net.state_dict().items() if "num_batches" not in k}
    torch.save({"best_prec1": 91.7, "state_dict": {**state, **(extra_state or {})}}, path)
    return path


@pytest.fixture
def cifar_images() -> Tensor:
    """(2, 3, 32, 32) random CIFAR-sized images."""
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(
    ("n", "build", "format"),
    [
        (3, lambda: build_backbone("resnet20"), "auto"),
        (1, lambda: cifar_resnet(1), "auto"),  # depth 8: the converter knows no fixed depth
        (5, lambda: build_backbone("resnet32", norm="frozen_bn"), "cifar"),
    ],
    ids=["resnet20", "n=1", "resnet32-named"],
)
def test_akamaster_checkpoint_gives_their_logits(
    tmp_path: Path,
    randomize_norms: Callable[..., nn.Module],
    cifar_images: Tensor,
    n: int,
    build: Callable[[], nn.Module],
    format: str,
) -> None:
    torch.manual_seed(n)
    theirs = randomize_norms(AkamasterResNet(n), seed=n)
    nn.init.normal_(theirs.linear.bias)
    expected = logits(theirs, cifar_images)
    path = save_akamaster(tmp_path / f"resnet{6 * n + 2}.th", theirs)

    ours = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read with weights_only=True, no full-unpickling fallback
        report = load_weights(ours, path, format=format)
    assert (report.format, report.ok, report.classifier_loaded) == ("cifar", True, True)
    assert torch.allclose(logits(ours, cifar_images), expected, atol=1e-5)

    # all the zeros after the input's channels: same weights, another function
    appended = AkamasterResNet(n, pad_before=False)
    appended.load_state_dict(theirs.state_dict())
    assert (logits(appended, cifar_images) - expected).abs().max() > 1e-2


@pytest.fixture
def akamaster20(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_akamaster(tmp_path / "resnet20-0000.th", AkamasterResNet(3))


def test_akamaster_checkpoint_into_another_net(akamaster20: Path) -> None:
    where = f"weights '{akamaster20}': pytorch_resnet_cifar10 (cifar format) weights"
    cases = [
        (
            build_backbone("resnet32"),
            f"{where} of a ResNet-20 (n=3) do not fit the model, a ResNet-32 (n=5); build resnet20",
        ),
        (
            build_backbone("resnet18", base_width=16),
            f"{where} fit the CIFAR ResNets (resnet20..resnet1202, cifar_resnet(n)), not ResNet",
        ),
        (
            build_backbone("plain20"),  # same parameters, but no shortcut: silently wrong
            f"{where} need option-A shortcuts; the model has none (a plain net, or shortcut "
            "B/C): build the resnetN with shortcut='A'",
        ),
    ]
    for model, message in cases:
        with pytest.raises(UserError) as info:
            load_weights(model, akamaster20)
        assert str(info.value) == message


def test_akamaster_checkpoint_with_uneven_stages(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = AkamasterResNet(1)
    net.layer2.append(AkamasterBlock(32, 32, 1))
    with pytest.raises(UserError, match=r"of a net of \[1, 2, 1\] blocks per stage do not fit "):
        load_weights(cifar_resnet(1), save_akamaster(tmp_path / "odd.th", net))


def test_akamaster_checkpoint_key_problems(akamaster20: Path) -> None:
    """Keys that do not fit after the depth check still get the usual report, in our names."""
    state = torch.load(akamaster20, weights_only=True)
    del state["state_dict"]["module.layer2.1.bn2.running_var"]
    state["state_dict"]["module.layer3.0.extra"] = torch.zeros(1)
    with pytest.raises(
        UserError,
        match=r"\(cifar format\) does not fit CifarResNet: 1 missing key: "
        r"res3\.1\.bn2\.running_var; 1 unexpected key: res4\.0\.extra$",
    ):
        load_weights(build_backbone("resnet20"), state)


def test_detect_cifar_format() -> None:
    theirs = AkamasterResNet(1).state_dict()
    assert detect_format(theirs) == "cifar"
    backbone_only = {k: v for k, v in theirs.items() if not k.startswith("linear.")}
    assert detect_format(backbone_only) == "torchvision"  # no linear: nothing says CIFAR
    with pytest.raises(UserError, match=r"not CifarResNet; pytorch_resnet_cifar10's load with"):
        load_weights(cifar_resnet(1), backbone_only)
    report = load_weights(cifar_resnet(1), backbone_only, format="cifar")
    assert report.ok and not report.classifier_loaded
    tv = torchvision.models.resnet18(weights=None).state_dict()
    assert detect_format(tv) == "torchvision"  # layer4 and fc
    assert detect_format({**tv, "linear.weight": torch.zeros(1)}) == "torchvision"


class _Payload:
    """Unpickling this runs a shell command: what a crafted weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_weights_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for name in ("evil.pth", "evil.pkl"):
        path = tmp_path / name
        if name.endswith(".pth"):
            torch.save({"model": {}, "payload": _Payload(marker)}, path)
        else:
            path.write_bytes(pickle.dumps({"conv1_w": np.zeros(3), "x": _Payload(marker)}))
        message = r"\((posix.system|[\w.]*_Payload)\); .*could run code .*, --trust-weights$"
        with pytest.raises(UserError, match=message):
            read_source(path)
        assert not marker.exists()


def test_a_raw_pickle_with_a_payload_named_pth_is_refused(tmp_path: Path) -> None:
    # not a PyTorch zip: torch's own message says only "Unsupported operand"; the class is
    # found in the pickle stream, and torch's protocol warning stays quiet
    marker, path = tmp_path / "pwned", tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps({"w": 1, "x": _Payload(marker)}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match=r"\(posix.system\); .*, --trust-weights$"):
            read_source(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["random.pth", "random.pkl", "empty.pth", "text.pth"])
def test_a_file_that_is_no_pickle_does_not_suggest_trust(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = {"random": np.random.default_rng(0).bytes(600), "empty": b"", "text": b"hello\n"}
    path.write_bytes(data[name.split(".")[0]])
    with pytest.raises(UserError) as info:
        read_source(path)
    message = str(info.value)
    assert message.startswith(f"weights file {str(path)!r} is not a readable checkpoint: ")
    assert "trust" not in message and "weights_only" not in message and "\n" not in message


def test_trusted_legacy_checkpoints_still_load(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pth"
    torch.save({"model": {"w": torch.ones(2)}, "rng": np.random.RandomState(0)}, path)
    with pytest.raises(UserError, match="--trust-weights"):
        read_source(path)
    assert torch.equal(read_source(path, trust=True)["model"]["w"], torch.ones(2))


def test_msra_blobs_load_without_trust(tmp_path: Path) -> None:
    path = tmp_path / "R-50.pkl"
    blobs = {"blobs": {"conv1_w": np.ones((2, 3), np.float32)}, "model_iter": 1}
    path.write_bytes(pickle.dumps(blobs, protocol=2))
    assert read_source(path)["blobs"]["conv1_w"].shape == (2, 3)


def test_a_checkpoint_whose_bytes_differ_from_its_sidecar_is_refused(tmp_path: Path) -> None:
    # weights files and checkpoints are read by one reader (engine.checkpoint.read_verified)
    from engine.checkpoint import write_checksum

    path = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.ones(2)}}, path)
    write_checksum(path)
    assert torch.equal(read_source(path)["model"]["w"], torch.ones(2))
    path.with_name("model_final.pth.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(UserError) as info:
        read_source(path)
    assert str(info.value) == (
        f"weights file {str(path)!r} is not a readable checkpoint: its SHA-256 differs from "
        "model_final.pth.sha256: the file is corrupt"
    )


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_ddp_and_compile_prefixes_are_stripped(prefix: str) -> None:
    net = build_backbone("resnet20", base_width=4)
    wrapped = {"model": {prefix + k: v for k, v in net.state_dict().items()}}
    assert load_weights(build_backbone("resnet20", base_width=4), wrapped).ok
