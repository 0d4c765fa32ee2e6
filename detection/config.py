"""Configs: YAML files and ``--set`` overrides filling a tree of typed dataclasses.

The defaults live here, one comment per field (docs/CONFIG.md is generated from these
comments by ``detection.config_docs``). An experiment file lists only what it changes and may
name one ``base:`` file (relative to itself); a base file may not have a base of its own.
Everything is checked: an unknown key, a value of the wrong type or outside its choices, a
missing file or malformed YAML raises :class:`UserError` with one line naming the file and key
(and, for a typo, the nearest valid key).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tempfile
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml

from backbones.errors import UserError

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip


def _choices(*values: str) -> dict[str, tuple[str, ...]]:
    return {"choices": values}


# ----------------------------------------------------------------------------- shared sections
@dataclass
class BackboneConfig:
    name: str = "resnet50"  # a key of backbones.BACKBONES (resnet18..152, plain*, vgg16, ...)
    weights: str = ""  # pretrained file (resdet pretrain, torchvision or MSRA); "" = He init
    weights_format: str = field(  # how to read `weights`; auto detects from the keys
        default="auto", metadata=_choices("auto", "resdet", "torchvision", "msra")
    )
    norm: str = field(  # normalisation layers; frozen_bn = fixed affine (the paper's detection)
        default="frozen_bn", metadata=_choices("bn", "frozen_bn", "syncbn")
    )
    freeze_at: int = 2  # 0 nothing frozen, 1 the stem, k the stem and the first k-1 stages
    stride_in_1x1: bool = False  # stride on a bottleneck's first 1x1 (paper/MSRA) not its 3x3
    shortcut: str = field(  # shortcut option: A zero-pad, B projection when shape changes, C all
        default="B", metadata=_choices("A", "B", "C")
    )
    base_width: int = 64  # channels of the first stage (64 in the paper; narrower for tests)


@dataclass
class DatasetConfig:
    format: str = field(  # on-disk layout of the data set
        default="voc", metadata=_choices("voc", "coco", "imagefolder", "cifar10")
    )
    root: str = ""  # VOC: VOCdevkit or VOC20xx folder; COCO: image folder; else the data root
    splits: list[str] = field(  # VOC: split files, "trainval" or "VOC2012/trainval" (under root)
        default_factory=lambda: ["trainval"]
    )
    ann_file: str = ""  # COCO: instances JSON (e.g. annotations/instances_val2017.json)
    include_empty: bool = False  # keep images without objects (always kept for evaluation)


@dataclass
class SolverConfig:
    base_lr: float = 0.02  # learning rate for the global batch `ims_per_batch`
    max_iter: int = 90000  # training iterations
    ims_per_batch: int = 16  # global batch size (all processes together), as in Detectron2
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0001  # L2 weight decay
    weight_decay_norm: float = 0.0  # weight decay on normalisation parameters
    weight_decay_bias: float = 0.0001  # weight decay on biases
    steps: list[int] = field(default_factory=lambda: [60000, 80000])  # iterations where lr *= gamma
    gamma: float = 0.1  # lr decay factor at each step
    warmup_iters: int = 1000  # iterations of warm-up
    warmup_factor: float = 0.001  # lr multiplier at the start of warm-up
    warmup_method: str = field(  # linear ramp, constant factor, or constant until error is low
        default="linear", metadata=_choices("linear", "constant", "until_error")
    )
    warmup_error: float = 0.8  # until_error: leave warm-up once the training error is below this
    clip_grad_norm: float = 0.0  # clip the global gradient norm to this value; 0 = off
    checkpoint_period: int = 5000  # iterations between checkpoints (and one at the end)
    amp: bool = False  # automatic mixed precision on CUDA (ignored on CPU)
    amp_dtype: str = field(default="bf16", metadata=_choices("bf16", "fp16"))  # AMP dtype
    on_nonfinite: str = field(  # a NaN/inf loss stops the run, or skips the batch
        default="stop", metadata=_choices("stop", "skip")
    )


# -------------------------------------------------------------------------------- detection
@dataclass
class AnchorConfig:
    sizes: list[list[float]] = field(  # anchor sizes (sqrt of area, input px), one list per level
        default_factory=lambda: [[128.0, 256.0, 512.0]]
    )
    aspect_ratios: list[float] = field(  # height / width ratios, shared by every level
        default_factory=lambda: [0.5, 1.0, 2.0]
    )
    offset: float = 0.0  # anchor centre offset in units of the stride (0.0 or 0.5)


@dataclass
class RPNConfig:
    in_features: list[str] = field(default_factory=lambda: ["c4"])  # feature maps the RPN sees
    iou_thresholds: list[float] = field(  # below the first: negative; at/above the second: positive
        default_factory=lambda: [0.3, 0.7]
    )
    allow_low_quality_matches: bool = True  # each GT's best anchor is positive too
    batch_size_per_image: int = 256  # anchors sampled per image for the loss
    positive_fraction: float = 0.5  # at most this share of the sample is positive
    bbox_reg_weights: list[float] = field(  # box-coder weights (wx, wy, ww, wh)
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0]
    )
    loss_type: str = field(default="smooth_l1", metadata=_choices("smooth_l1", "l1"))  # box loss
    smooth_l1_beta: float = 0.1111111111111111  # 1/sigma^2 with py-faster-rcnn's sigma 3
    loss_weight: float = 1.0  # multiplier of both RPN losses
    pre_nms_topk_train: int = 12000  # proposals kept before NMS (per level for FPN), training
    post_nms_topk_train: int = 2000  # proposals kept after NMS, training
    pre_nms_topk_test: int = 6000  # proposals kept before NMS (per level for FPN), testing
    post_nms_topk_test: int = 300  # proposals kept after NMS, testing (the paper: 300)
    nms_thresh: float = 0.7  # NMS IoU threshold for proposals
    min_size: float = 0.0  # drop proposals smaller than this (input pixels)


@dataclass
class ROIHeadsConfig:
    batch_size_per_image: int = 128  # RoIs sampled per image for the loss
    positive_fraction: float = 0.25  # at most this share of the sample is foreground
    iou_threshold: float = 0.5  # IoU with a GT at or above which a RoI is foreground
    bg_iou_low: float = 0.0  # RoIs with IoU in [bg_iou_low, iou_threshold) are background
    add_gt_as_proposals: bool = True  # append the GT boxes to the proposals when training
    pooler_type: str = field(default="roi_pool", metadata=_choices("roi_pool", "roi_align"))  # op
    pooler_resolution: int = 14  # RoI feature size (14 for C4 then res5 stride 2; 7 for VGG/FPN)
    pooler_sampling_ratio: int = 0  # RoIAlign samples per bin (0 = adaptive)
    pooler_aligned: bool = True  # RoIAlign half-pixel correction (RoIAlignV2)
    fc_dim: int = 1024  # width of the FPN box head's two fc layers
    bbox_reg_weights: list[float] = field(  # box-coder weights for the class-specific deltas
        default_factory=lambda: [10.0, 10.0, 5.0, 5.0]
    )
    loss_type: str = field(default="smooth_l1", metadata=_choices("smooth_l1", "l1"))  # box loss
    smooth_l1_beta: float = 1.0  # smooth-L1 transition point (py-faster-rcnn: sigma 1)


@dataclass
class FPNConfig:
    in_features: list[str] = field(  # backbone stages fed to the FPN
        default_factory=lambda: ["c2", "c3", "c4", "c5"]
    )
    out_channels: int = 256  # channels of every pyramid level P2..P6
    canonical_size: int = 224  # RoI level mapping: a box of this size goes to canonical_level
    canonical_level: int = 4  # pyramid level for a canonical-size box


@dataclass
class ModelConfig:
    arch: str = field(  # C4 (the paper's ResNet), vgg (the paper's VGG-16), fpn
        default="c4", metadata=_choices("c4", "vgg", "fpn")
    )
    num_classes: int = 20  # object classes, background excluded
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)


@dataclass
class DataConfig:
    train: DatasetConfig = field(default_factory=DatasetConfig)
    test: DatasetConfig = field(default_factory=lambda: DatasetConfig(splits=["test"]))
    class_names: list[str] = field(  # class names in label order; [] = VOC's 20 or COCO's cats
        default_factory=list
    )
    num_workers: int = 2  # DataLoader worker processes per training process
    aspect_ratio_grouping: bool = True  # batch landscape and portrait images apart
    skip_bad_images: bool = True  # a corrupt image is skipped with a warning (False: error)


@dataclass
class InputConfig:
    min_size_train: list[int] = field(  # shorter side when training, one picked per image
        default_factory=lambda: [600]
    )
    max_size_train: int = 1000  # cap on the longer side when training
    min_size_test: int = 600  # shorter side when testing
    max_size_test: int = 1000  # cap on the longer side when testing
    format: str = field(default="BGR", metadata=_choices("BGR", "RGB"))  # channel order fed in
    pixel_mean: list[float] = field(  # per-channel mean in `format` order, 0..255 scale
        default_factory=lambda: [102.9801, 115.9465, 122.7717]
    )
    pixel_std: list[float] = field(  # per-channel std in `format` order, 0..255 scale
        default_factory=lambda: [1.0, 1.0, 1.0]
    )
    flip_prob: float = 0.5  # probability of a horizontal flip when training
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength; 0 = off
    size_divisibility: int = 32  # pad batches to a multiple of this


@dataclass
class TestConfig:
    eval_period: int = 0  # evaluate every this many iterations (0: only at the end)
    metrics: list[str] = field(  # evaluators: voc07 (11-point), voc (area), coco (mAP@[.5,.95])
        default_factory=lambda: ["voc07", "coco"]
    )
    score_thresh: float = 0.05  # drop detections scoring below this
    nms_thresh: float = 0.3  # per-class NMS IoU threshold (py-faster-rcnn: 0.3)
    detections_per_image: int = 100  # keep at most this many detections per image
    ims_per_batch: int = 1  # images per batch at test time (per process)
    coco_backend: str = field(  # COCO evaluation backend (faster = faster-coco-eval)
        default="faster", metadata=_choices("faster", "pycocotools")
    )


@dataclass
class Config:
    """A detection run (`resdet train / eval / infer`)."""

    output_dir: str = "output"  # where config.yaml, checkpoints, metrics and results go
    seed: int = 0  # seed for Python, NumPy and torch (each process adds its rank)
    device: str = field(
        default="auto", metadata=_choices("auto", "cpu", "cuda")
    )  # auto: CUDA if present
    deterministic: bool = False  # deterministic algorithms (bit-exact resume on CPU)
    log_period: int = 20  # iterations between metrics.jsonl lines
    tensorboard: bool = False  # also write TensorBoard events (needs the `tb` extra)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    input: InputConfig = field(default_factory=InputConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)


# --------------------------------------------------------------------------- classification
@dataclass
class ClassifierConfig:
    num_classes: int = 1000  # classifier outputs
    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(name="resnet50", norm="bn", freeze_at=0)
    )


@dataclass
class PretrainDataConfig:
    train: DatasetConfig = field(
        default_factory=lambda: DatasetConfig(format="imagefolder", splits=["train"])
    )
    test: DatasetConfig = field(
        default_factory=lambda: DatasetConfig(format="imagefolder", splits=["val"])
    )
    num_workers: int = 4  # DataLoader worker processes per training process
    skip_bad_images: bool = True  # a corrupt image is skipped with one warning (False: error)


@dataclass
class PretrainInputConfig:
    scale_range: list[int] = field(  # training: shorter side random in [low, high] (the paper)
        default_factory=lambda: [256, 480]
    )
    crop_size: int = 224  # training crop (32 for CIFAR)
    pad: int = 0  # zero padding before the random crop (4 for CIFAR)
    flip_prob: float = 0.5  # horizontal flip probability
    lighting_std: float = 0.1  # AlexNet PCA colour augmentation strength; 0 = off
    pixel_mean: list[float] = field(  # RGB mean, 0..255 scale (CIFAR: per-pixel mean from data)
        default_factory=lambda: [123.675, 116.28, 103.53]
    )
    pixel_std: list[float] = field(  # RGB std, 0..255 scale (the paper: mean subtraction only)
        default_factory=lambda: [1.0, 1.0, 1.0]
    )
    per_pixel_mean: bool = False  # subtract the per-pixel training-set mean image (CIFAR)
    test_resize: int = 256  # centre/10-crop testing: shorter side before cropping
    test_modes: list[str] = field(  # center, 10crop, multiscale (fully-convolutional)
        default_factory=lambda: ["center"]
    )
    test_scales: list[int] = field(  # multiscale testing: shorter sides, scores averaged
        default_factory=lambda: [224, 256, 384, 480, 640]
    )


@dataclass
class PretrainConfig:
    """A classification run (`resdet pretrain`)."""

    output_dir: str = "output/pretrain"  # where config.yaml, checkpoints and backbone.pth go
    seed: int = 0  # seed for Python, NumPy and torch (each process adds its rank)
    device: str = field(
        default="auto", metadata=_choices("auto", "cpu", "cuda")
    )  # auto: CUDA if present
    deterministic: bool = False  # deterministic algorithms (bit-exact resume on CPU)
    log_period: int = 20  # iterations between metrics.jsonl lines
    tensorboard: bool = False  # also write TensorBoard events (needs the `tb` extra)
    channels_last: bool = True  # channels_last memory format on CUDA
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    input: PretrainInputConfig = field(default_factory=PretrainInputConfig)
    solver: SolverConfig = field(
        default_factory=lambda: SolverConfig(
            base_lr=0.1,
            max_iter=600000,
            ims_per_batch=256,
            steps=[150000, 300000, 450000],
            warmup_iters=0,
            checkpoint_period=10000,
        )
    )
    eval_period: int = 0  # evaluate every this many iterations (0: only at the end)


# ------------------------------------------------------------------------------- the loader
C = TypeVar("C")


@overload
def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ...) -> Config: ...
@overload
def load_config(
    path: str | os.PathLike[str] | None, overrides: Sequence[str] = ..., *, cls: type[C]
) -> C: ...
def load_config(
    path: str | os.PathLike[str] | None,
    overrides: Sequence[str] = (),
    cls: type[Any] = Config,
) -> Any:
    """Load a YAML config (with at most one level of ``base:``) and apply ``--set`` overrides.

    Args:
        path: YAML file, or None for the defaults.
        overrides: ``dotted.key=value`` strings; values are parsed as YAML and coerced.
        cls: the root dataclass (Config or PretrainConfig).

    Raises:
        UserError: unknown key, wrong type, bad choice, missing file or malformed YAML.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        tree = _read_yaml(Path(path))
        base = tree.pop("base", None)
        if base is not None:
            if not isinstance(base, str):
                raise UserError(f"{path}: key 'base' must be a file path, got {base!r}")
            base_path = Path(path).parent / base
            base_tree = _read_yaml(base_path)
            if "base" in base_tree:
                raise UserError(f"{base_path}: a base config may not have a 'base' of its own")
            tree = _merge(base_tree, tree)
    cfg = cls()
    _fill(cfg, tree, source, prefix="")
    for item in overrides:
        _apply_override(cfg, item)
    return cfg


def save_config(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML, atomically (temp file, fsync, rename)."""
    text = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, default_flow_style=None)
    atomic_write_text(Path(path), text)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child values replace base values; nested mappings merge key by key."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"


def _fill(node: Any, tree: Any, source: str, prefix: str) -> None:
    """Set the fields of the dataclass instance ``node`` from the mapping ``tree``, checked."""
    if not isinstance(tree, dict):
        raise UserError(f"{source}: key '{prefix.rstrip('.')}' must be a mapping, got {tree!r}")
    types_ = _field_types(type(node))
    valid = [prefix + k for k in types_]
    for key in tree:
        if key not in types_:
            hint = _nearest(prefix + str(key), valid)
            raise UserError(f"{source}: unknown key '{prefix}{key}'{hint}")
    for f in dataclasses.fields(node):
        if f.name not in tree:
            continue
        kind, key = types_[f.name], prefix + f.name
        if dataclasses.is_dataclass(kind):
            # a section starts from its parent's default (e.g. data.test.splits = ["test"])
            _fill(getattr(node, f.name), tree[f.name], source, key + ".")
        else:
            setattr(node, f.name, _coerce(tree[f.name], kind, f"{source}: key '{key}'", f.metadata))


def _coerce(value: Any, kind: Any, where: str, metadata: Any = None) -> Any:
    """Check ``value`` against the annotation ``kind`` (str, int, float, bool, list[...])."""
    origin = typing.get_origin(kind)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise UserError(f"{where} expects a list, got {value!r}")
        (item_kind,) = typing.get_args(kind)
        return [_coerce(v, item_kind, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config annotation {kind}")
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if not ok:
        raise UserError(f"{where} expects {kind.__name__}, got {value!r}")
    choices = (metadata or {}).get("choices")
    if choices and value not in choices:
        raise UserError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return float(value) if kind is float else value


def _apply_override(cfg: Any, item: str) -> None:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected dotted.key=value")
    dotted, raw = item.split("=", 1)
    parts = dotted.strip().split(".")
    node = cfg
    for i, part in enumerate(parts):
        types_ = _field_types(type(node))
        if part not in types_:
            prefix = ".".join(parts[:i])
            valid = [f"{prefix}.{k}" if prefix else k for k in types_]
            raise UserError(f"--set: unknown key '{dotted}'{_nearest(dotted, valid)}")
        if i == len(parts) - 1:
            kind = types_[part]
            if dataclasses.is_dataclass(kind):
                raise UserError(f"--set: '{dotted}' is a section; set one of its keys")
            meta = {f.name: f.metadata for f in dataclasses.fields(node)}[part]
            value = _coerce(_parse_value(raw, kind), kind, f"--set: key '{dotted}'", meta)
            setattr(node, part, value)
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise UserError(f"--set: '{'.'.join(parts[: i + 1])}' is not a section")


def _parse_value(raw: str, kind: Any) -> Any:
    """Parse a command-line value as YAML; 'a,b' is a list and plain text stays a string."""
    if kind is str:
        return raw
    if typing.get_origin(kind) is list and not raw.strip().startswith("["):
        raw = f"[{raw}]" if raw.strip() else "[]"
    try:
        return yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        return raw
