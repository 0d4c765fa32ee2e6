"""The detection task's config schema: ``Config`` and its sections, on engine's machinery.

The defaults live here, one comment per field (docs/CONFIG.md is generated from these
comments by ``tools.config_docs``); loading, ``--set`` overrides and every check are
:mod:`engine.config`'s. ``model.backbone`` is the backbones' shared section, ``solver`` and
the run-level keys are engine's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from backbones.config import BackboneConfig
from engine import config as engine_config
from engine.config import MAX_IMAGE_SIDE, RunConfig, SolverConfig, at_least, between, choices

PRECISIONS = ("fp32", "bf16")  # test.precision, and the Predictor's precision argument
# the Predictor's runtimes: torch runs the modules, the others the exported graph (export.py)
RUNTIMES = ("torch", "onnxruntime", "openvino")


@dataclass
class DatasetConfig:
    format: str = field(  # on-disk layout: PASCAL VOC (XML per image) or COCO (one JSON)
        default="voc", metadata=choices("voc", "coco")
    )
    root: str = ""  # VOC: VOCdevkit or VOC20xx folder; COCO: image folder
    splits: list[str] = field(  # VOC: split files, "trainval" or "VOC2012/trainval" (under root)
        default_factory=lambda: ["trainval"]
    )
    image_dir: str = "JPEGImages"  # VOC: image folder under root (LabelImg folders: e.g. images)
    ann_dir: str = "Annotations"  # VOC: XML folder under root (LabelImg folders: annotations)
    split_dir: str = "ImageSets/Main"  # VOC: folder of <split>.txt under root (or absolute)
    ann_file: str = ""  # COCO: instances JSON (e.g. annotations/instances_val2017.json)
    include_empty: bool = False  # keep images without objects (always kept for evaluation)


@dataclass
class AnchorConfig:
    sizes: list[list[float]] = field(  # anchor sizes (sqrt of area, input px), one list per level
        default_factory=lambda: [[128.0, 256.0, 512.0]], metadata=between(1, MAX_IMAGE_SIDE)
    )
    aspect_ratios: list[float] = field(  # height / width ratios, shared by every level
        default_factory=lambda: [0.5, 1.0, 2.0], metadata=between(0.001, 1000)
    )
    offset: float = field(  # anchor centre offset in units of the stride (0.0 or 0.5)
        default=0.0, metadata=between(0, 1)
    )


@dataclass
class RPNConfig:
    in_features: list[str] = field(default_factory=lambda: ["c4"])  # feature maps the RPN sees
    iou_thresholds: list[float] = field(  # below the first: negative; at/above the second: positive
        default_factory=lambda: [0.3, 0.7], metadata=between(0, 1)
    )
    allow_low_quality_matches: bool = True  # each GT's best anchor is positive too
    batch_size_per_image: int = field(  # anchors sampled per image for the loss
        default=256, metadata=at_least(1)
    )
    positive_fraction: float = field(  # at most this share of the sample is positive
        default=0.5, metadata=between(0, 1)
    )
    bbox_reg_weights: list[float] = field(  # box-coder weights (wx, wy, ww, wh)
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0]
    )
    loss_type: str = field(default="smooth_l1", metadata=choices("smooth_l1", "l1"))  # box loss
    smooth_l1_beta: float = 0.1111111111111111  # 1/sigma^2 with py-faster-rcnn's sigma 3
    loss_weight: float = 1.0  # multiplier of both RPN losses
    pre_nms_topk_train: int = 12000  # proposals kept before NMS (per level for FPN), training
    post_nms_topk_train: int = 2000  # proposals kept after NMS, training
    pre_nms_topk_test: int = 6000  # proposals kept before NMS (per level for FPN), testing
    post_nms_topk_test: int = 300  # proposals kept after NMS, testing (the paper: 300)
    nms_thresh: float = field(  # NMS IoU threshold for proposals
        default=0.7, metadata=between(0, 1)
    )
    min_size: float = field(  # drop proposals smaller than this (input pixels)
        default=0.0, metadata=at_least(0)
    )


@dataclass
class ROIHeadsConfig:
    batch_size_per_image: int = field(  # RoIs sampled per image for the loss
        default=128, metadata=at_least(1)
    )
    positive_fraction: float = field(  # at most this share of the sample is foreground
        default=0.25, metadata=between(0, 1)
    )
    iou_threshold: float = field(  # IoU with a GT at or above which a RoI is foreground
        default=0.5, metadata=between(0, 1)
    )
    bg_iou_low: float = field(  # RoIs with IoU in [bg_iou_low, iou_threshold) are background
        default=0.0, metadata=between(0, 1)
    )
    add_gt_as_proposals: bool = True  # append the GT boxes to the proposals when training
    pooler_type: str = field(default="roi_pool", metadata=choices("roi_pool", "roi_align"))  # op
    pooler_resolution: int = 14  # RoI feature size (14 for C4 then res5 stride 2; 7 for VGG/FPN)
    pooler_sampling_ratio: int = 0  # RoIAlign samples per bin (0 = adaptive)
    pooler_aligned: bool = True  # RoIAlign half-pixel correction (RoIAlignV2)
    fc_dim: int = 1024  # width of the FPN box head's two fc layers
    bbox_reg_weights: list[float] = field(  # box-coder weights for the class-specific deltas
        default_factory=lambda: [10.0, 10.0, 5.0, 5.0]
    )
    loss_type: str = field(default="smooth_l1", metadata=choices("smooth_l1", "l1"))  # box loss
    smooth_l1_beta: float = 1.0  # smooth-L1 transition point (py-faster-rcnn: sigma 1)
    global_context: bool = False  # appendix B: whole-image RoI feature concatenated to each RoI's


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
        default="c4", metadata=choices("c4", "vgg", "fpn")
    )
    num_classes: int = 20  # object classes, background excluded
    weights: str = ""  # detector checkpoint to train from (e.g. COCO's for VOC); "" = backbone's
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
    num_workers: int = field(  # DataLoader worker processes per training process
        default=2, metadata=at_least(0)
    )
    aspect_ratio_grouping: bool = True  # batch landscape and portrait images apart
    skip_bad_images: bool = True  # a corrupt image is skipped with a warning (False: error)


@dataclass
class InputConfig:
    min_size_train: list[int] = field(  # shorter side when training, one picked per image
        default_factory=lambda: [600], metadata=between(1, MAX_IMAGE_SIDE, nonempty=True)
    )
    max_size_train: int = field(  # cap on the longer side when training
        default=1000, metadata=between(1, MAX_IMAGE_SIDE)
    )
    min_size_test: int = field(  # shorter side when testing
        default=600, metadata=between(1, MAX_IMAGE_SIDE)
    )
    max_size_test: int = field(  # cap on the longer side when testing
        default=1000, metadata=between(1, MAX_IMAGE_SIDE)
    )
    format: str = field(default="BGR", metadata=choices("BGR", "RGB"))  # channel order fed in
    pixel_mean: list[float] = field(  # per-channel mean in `format` order, 0..255 scale
        default_factory=lambda: [102.9801, 115.9465, 122.7717]
    )
    pixel_std: list[float] = field(  # per-channel std in `format` order, 0..255 scale
        default_factory=lambda: [1.0, 1.0, 1.0]
    )
    flip_prob: float = field(  # probability of a horizontal flip when training
        default=0.5, metadata=between(0, 1)
    )
    color_jitter: float = field(  # brightness/contrast/saturation jitter strength; 0 = off
        default=0.0, metadata=between(0, 1)
    )
    size_divisibility: int = field(  # pad batches to a multiple of this
        default=32, metadata=at_least(1)
    )
    reduced_decode: bool = True  # JPEGs shrunk >= 2x decode at 1/2, 1/4 or 1/8 scale (faster)


@dataclass
class TestConfig:
    eval_period: int = field(  # evaluate every this many iterations (0: only at the end)
        default=0, metadata=at_least(0)
    )
    metrics: list[str] = field(  # evaluators: voc07 (11-point), voc (area), coco (mAP@[.5,.95])
        default_factory=lambda: ["voc07", "coco"], metadata=choices("voc07", "voc", "coco")
    )
    score_thresh: float = field(  # drop detections scoring below this
        default=0.05, metadata=between(0, 1)
    )
    nms_thresh: float = field(  # per-class NMS IoU threshold (py-faster-rcnn: 0.3)
        default=0.3, metadata=between(0, 1)
    )
    detections_per_image: int = field(  # keep at most this many detections per image
        default=100, metadata=at_least(1)
    )
    box_voting: bool = False  # after NMS, each box -> score-weighted mean of its class's overlaps
    box_voting_iou: float = field(  # candidates at IoU >= this with a kept box vote for it
        default=0.5, metadata=between(0, 1)
    )
    box_refinement: bool = False  # score each RoI's regressed box again; select from both passes
    pyramid_sizes: list[int] = field(  # multi-scale testing: shorter sides ([] = single scale)
        default_factory=list, metadata=between(1, MAX_IMAGE_SIDE)
    )
    pyramid_max_size: int = field(  # cap on the longer side of the pyramid's images
        default=2000, metadata=between(1, MAX_IMAGE_SIDE)
    )
    pyramid_roi_size: float = field(  # a RoI is scored at the 2 scales around this size (px)
        default=224.0, metadata=between(1, MAX_IMAGE_SIDE)
    )
    flip: bool = False  # also score every RoI on the mirrored image; average the two
    ensemble_proposals: str = field(  # ensemble RoIs: all members' proposals, or nms: their NMS
        default="all", metadata=choices("all", "nms")
    )
    ims_per_batch: int = field(  # images per batch at test time (per process)
        default=1, metadata=at_least(1)
    )
    coco_backend: str = field(  # COCO evaluation backend (faster = faster-coco-eval)
        default="faster", metadata=choices("faster", "pycocotools")
    )
    precision: str = field(  # inference: fp32, or bf16 autocast (CUDA; CPU with native bf16)
        default="fp32", metadata=choices(*PRECISIONS)
    )
    compile: bool = False  # torch.compile backbone + FPN for inference (seconds to compile first)


@dataclass
class Config(RunConfig):
    """A detection run (`resdet train / eval / infer`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    input: InputConfig = field(default_factory=InputConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    channels_last: bool = True  # NHWC feature maps (faster convolutions on CPU and CUDA)


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> Config:
    """A detection config from YAML (or the defaults) and ``--set`` overrides, all checked.

    Raises:
        UserError: unknown key, wrong type, bad choice, missing file or malformed YAML, or,
            with VOC metrics, a class name that cannot name a file (:func:`check_class_names`).
    """
    cfg = engine_config.load_config(Config, path, overrides)
    check_class_names(cfg.data.class_names, "key 'data.class_names'", cfg.test.metrics)
    return cfg


MAX_CLASS_NAME_BYTES = 200  # comp4_det_<split>_<name>.txt stays within the 255-byte limit


def check_class_names(names: Sequence[str], where: str, metrics: Sequence[str]) -> None:
    """Refuse class names that cannot name a VOC result file, or that repeat, when the VOC
    metrics write such files.

    ``test.metrics`` voc07 / voc write ``voc_results/comp4_det_<split>_<name>.txt`` per class
    at the end of training: a ``/``, ``\\``, control character, ``.`` / ``..``, an empty name
    or one over 200 bytes would fail there, after the whole run (or write outside
    ``voc_results``), and a repeated name would merge two classes' detections.
    ``"traffic light"`` is fine; with ``coco`` alone (torchvision's ``N/A`` placeholders) any
    name is.

    Args:
        names: class names in label order.
        where: the key or file they come from, for the message.
        metrics: the ``test.metrics`` in force.

    Raises:
        UserError: naming ``where`` and the first such name.
    """
    from engine.errors import UserError
    from engine.paths import unsafe_name_reason

    voc = [metric for metric in metrics if metric in ("voc07", "voc")]
    for k, name in enumerate(names if voc else ()):
        reason = unsafe_name_reason(name)
        if reason is None and len(name.encode()) > MAX_CLASS_NAME_BYTES:
            reason = f"is longer than {MAX_CLASS_NAME_BYTES} bytes"
        if reason is None and name in names[:k]:
            reason = "is listed twice"
        if reason is not None:
            raise UserError(
                f"{where}: {name!r} {reason}; expected a class name that can name a file of its "
                f"own (test.metrics {voc[0]} writes voc_results/comp4_det_<split>_<name>.txt)"
            )
