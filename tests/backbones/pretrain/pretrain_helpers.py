"""Generators of small classification sets (ImageFolder and CIFAR-10 format) for the tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np

SHAPES = ("circle", "cross", "square", "triangle")  # sorted: the ImageFolder label order


def draw_shape(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB: a shape of class ``label`` at a random place, size, colour.

    Colour and background are random for every class, so only the shape tells them apart.
    """
    image = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)  # dark noisy background
    colour = tuple(int(c) for c in rng.integers(120, 256, 3))
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    name = SHAPES[label]
    if name == "circle":
        cv2.circle(image, (cx, cy), r, colour, -1)
    elif name == "cross":
        t = max(2, r // 3)
        cv2.rectangle(image, (cx - r, cy - t), (cx + r, cy + t), colour, -1)
        cv2.rectangle(image, (cx - t, cy - r), (cx + t, cy + r), colour, -1)
    elif name == "square":
        cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(image, [pts], colour)
    return image


def make_imagefolder(root: Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """Write ``root/<split>/<shape>/<i>.png`` (lossless) with ``per_class[split]`` images each."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(SHAPES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                bgr = cv2.cvtColor(draw_shape(rng, label, size), cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(folder / f"{i:04d}.png"), bgr)
    return root


def make_cifar10(root: Path, per_batch: int, test: int, seed: int = 0) -> Path:
    """Write the exact CIFAR-10 python layout: data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        labels = [int(v) for v in rng.integers(0, len(SHAPES), n)]
        images = np.stack([draw_shape(rng, label, 32) for label in labels])
        batch = {
            b"batch_label": f"{name} (generated)".encode(),
            b"labels": labels,
            # (N, 3072): the red plane row-major, then green, then blue
            b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
        }
        with (root / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {
        b"label_names": [s.encode() for s in SHAPES],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    with (root / "batches.meta").open("wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


SMALL_RUN = {
    "device": "cpu",
    "deterministic": True,
    "log_period": 5,
    "channels_last": False,
    "model": {
        "num_classes": 4,
        "backbone": {
            "name": "resnet20",
            "norm": "bn",
            "freeze_at": 0,
            "shortcut": "A",
            "base_width": 4,
        },
    },
    "data": {"num_workers": 0},
    "input": {
        "scale_range": [32, 32],
        "crop_size": 32,
        "pad": 4,
        "lighting_std": 0.0,
        "per_pixel_mean": True,
        "test_resize": 32,
        "test_modes": ["center"],
    },
    "solver": {
        "base_lr": 0.1,
        "ims_per_batch": 16,
        "max_iter": 6,
        "steps": [4],
        "warmup_iters": 0,
        "checkpoint_period": 3,
        "weight_decay_norm": 0.0001,
    },
}


def merge(base: dict, child: dict) -> dict:
    """Nested dict merge: ``child`` values win."""
    out = dict(base)
    for k, v in child.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_tinyimagenet(
    root: Path,
    train: int,
    val: int,
    wnids: tuple[str, ...] = ("n01443537", "n09999999"),
    seed: int = 0,
) -> Path:
    """Write Tiny ImageNet-200's layout: wnids.txt, words.txt, train/<wnid>/images/*.JPEG
    (with the <wnid>_boxes.txt beside them), val/images/val_N.JPEG + val_annotations.txt.

    Class ``i`` of ``wnids`` draws shape ``i``; the val images cycle through the classes in
    reverse, so their labels come only from the annotation file.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = [f"{w}\tshape {SHAPES[i]}, {i}" for i, w in enumerate(wnids)]
    (root / "words.txt").write_text("\n".join(["n00001740\tentity", *words]) + "\n")
    for label, wnid in enumerate(wnids):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for i in range(train):
            bgr = cv2.cvtColor(draw_shape(rng, label, 64), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(images / f"{wnid}_{i}.JPEG"), bgr)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for i in range(val):
        label = len(wnids) - 1 - i % len(wnids)
        bgr = cv2.cvtColor(draw_shape(rng, label, 64), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(root / "val" / "images" / f"val_{i}.JPEG"), bgr)
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t1\t2\t60\t61\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root
