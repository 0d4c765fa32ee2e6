"""Learning check: a narrow ResNet-18-C4 memorises 4 generated images to mAP@.5 >= 0.9."""

from __future__ import annotations

import time

import numpy as np
import torch

from detection.config import Config
from detection.data.synthetic import SHAPE_CLASSES, render_scene
from detection.data.transforms import collate_images, normalize
from detection.evaluation.voc import ClassDetections, evaluate_voc, to_voc_boxes
from detection.modeling.build import build_model
from detection.structures import Detections, ImageRecord, Targets

INDICES = (2, 4, 7, 11)  # 9 objects of all 5 classes, 16..83 px, none "difficult"
SIZE = 128


def overfit_config() -> Config:
    cfg = Config()
    cfg.model.arch = "c4"
    cfg.model.num_classes = len(SHAPE_CLASSES)
    cfg.model.backbone.name = "resnet18"
    cfg.model.backbone.base_width = 16
    cfg.model.backbone.norm = "bn"  # from scratch: train BN on the one fixed batch
    cfg.model.backbone.freeze_at = 0
    cfg.model.anchors.sizes = [[16.0, 32.0, 64.0, 128.0]]
    cfg.model.rpn.pre_nms_topk_train = cfg.model.rpn.pre_nms_topk_test = 600
    cfg.model.rpn.post_nms_topk_train = cfg.model.rpn.post_nms_topk_test = 100
    cfg.model.roi_heads.pooler_type = "roi_align"
    cfg.model.roi_heads.batch_size_per_image = 64
    cfg.test.nms_thresh = 0.3
    return cfg


def _data() -> tuple[list[ImageRecord], list[torch.Tensor], list[Targets]]:
    records, images, targets = [], [], []
    for i in INDICES:
        scene = render_scene(0, i, SIZE, SIZE)
        boxes = np.array([o.box for o in scene.objects], np.float32)
        labels = np.array([o.label for o in scene.objects], np.int64)
        records.append(
            ImageRecord(str(i), f"{i}.jpg", SIZE, SIZE, boxes, labels, np.zeros(len(boxes), bool))
        )
        images.append(normalize(scene.image, "RGB", [123.675, 116.28, 103.53], [58.4, 57.1, 57.4]))
        targets.append(
            Targets(
                torch.from_numpy(boxes),
                torch.from_numpy(labels),
                torch.zeros(len(boxes), dtype=torch.bool),
            )
        )
    return records, images, targets


def _voc_map(records: list[ImageRecord], detections: list[Detections]) -> float:
    by_class = {}
    for c, name in enumerate(SHAPE_CLASSES):
        ids, scores, boxes = [], [], []
        for record, det in zip(records, detections):
            keep = det.labels == c
            ids += [str(record.image_id)] * int(keep.sum())
            scores.append(det.scores[keep].numpy())
            boxes.append(to_voc_boxes(det.boxes[keep].numpy()))
        by_class[name] = ClassDetections(ids, np.concatenate(scores), np.concatenate(boxes))
    return evaluate_voc(records, by_class, SHAPE_CLASSES, "voc07").mAP


def test_resnet18_c4_memorises_four_images() -> None:
    torch.manual_seed(0)
    start = time.monotonic()
    records, images, targets = _data()
    batch = collate_images(images, [(SIZE, SIZE)] * 4, [(1.0, 1.0)] * 4)
    model = build_model(overfit_config()).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.04, momentum=0.9, weight_decay=1e-4)
    for step in range(300):
        losses = model(batch, targets).losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        if step % 25 == 24:
            model.eval()
            with torch.no_grad():
                detections = model(batch, detect=True).detections
            model.train()
            assert detections is not None
            score = _voc_map(records, detections)
            print(f"step {step + 1}: mAP@.5 {score:.3f}, {time.monotonic() - start:.0f} s")
            if score >= 0.9:
                break
    assert score >= 0.9
