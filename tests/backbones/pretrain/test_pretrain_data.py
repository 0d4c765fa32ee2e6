"""Readers (ImageFolder, CIFAR-10) and bad files (the sampler: tests/engine)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_helpers import SHAPES, make_cifar10, make_imagefolder

from backbones.pretrain.data import (
    BadImage,
    ClassBatch,
    TrainDataset,
    collate_train,
    pixel_mean_image,
)
from backbones.pretrain.readers import read_cifar10, read_imagefolder, read_splits
from backbones.pretrain.task import skip_bad_images
from engine.errors import DataWarning, UserError
from engine.images import BadImagePolicy, decode_image


def test_imagefolder_classes_sorted_and_labels(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, {"train": 3})
    data = read_imagefolder(tmp_path, "train")
    assert data.classes == list(SHAPES) == sorted(SHAPES)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert data.paths is not None and data.paths[3].endswith("train/cross/0000.png")
    assert decode_image(data.paths[0]).shape == (32, 32, 3)


def test_missing_split_and_empty_class_folder_name_the_path(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, {"train": 1})
    with pytest.raises(UserError, match=rf"{tmp_path / 'val'}: split folder not found"):
        read_imagefolder(tmp_path, "val")
    (tmp_path / "train" / "zebra").mkdir()
    (tmp_path / "train" / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=rf"{tmp_path / 'train' / 'zebra'}: empty class folder"):
        read_imagefolder(tmp_path, "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        read_imagefolder(tmp_path, "empty")


def test_cifar10_reader_reads_the_exact_format(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "cifar-10-batches-py", per_batch=3, test=2)
    train, test = read_cifar10(root, "train"), read_cifar10(root, "test")
    assert train.classes == list(SHAPES)
    assert train.images is not None and train.images.shape == (15, 32, 32, 3)
    assert len(test) == 2 and train.images.dtype == np.uint8
    with (root / "data_batch_2").open("rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # pixel (row 5, col 7) of the 1st image of batch 2: red at 5*32+7, green +1024, blue +2048
    rgb = [raw[b"data"][0][c * 1024 + 5 * 32 + 7] for c in range(3)]
    assert train.images[3, 5, 7].tolist() == rgb
    assert train.labels[3:6].tolist() == raw[b"labels"]


def test_cifar10_errors(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "c", per_batch=2, test=2)
    with pytest.raises(UserError, match="split 'val' is not known; expected train or test"):
        read_cifar10(root, "val")
    (root / "data_batch_4").unlink()
    with pytest.raises(UserError, match=rf"{root / 'data_batch_4'}: CIFAR-10 file not found"):
        read_cifar10(root, "train")
    (root / "test_batch").write_bytes(b"garbage")
    with pytest.raises(UserError, match="test_batch: not a CIFAR-10 python pickle"):
        read_cifar10(root, "test")
    with pytest.raises(UserError, match="not a classification format"):
        read_splits("voc", str(root), ["train"])


def test_bad_files_are_skipped_with_one_warning_each_or_fatal(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, {"train": 2})
    data = read_imagefolder(tmp_path, "train")
    assert data.paths is not None
    Path(data.paths[1]).write_bytes(b"corrupt")
    dataset = TrainDataset(data, lambda image, seed: torch.zeros(3, 2, 2))
    item = dataset[(1, 0)]
    reason = f"{data.paths[1]}: the image does not decode (corrupt or not an image)"
    assert item == BadImage(data.paths[1], reason)
    batch = collate_train([dataset[(0, 0)], item, dataset[(2, 0)]])
    assert batch.images.shape == (2, 3, 2, 2) and batch.labels.tolist() == [0, 1]
    with pytest.warns(DataWarning, match="skipping a bad image") as record:
        policy = BadImagePolicy(skip=True, num_images=len(data))
        assert len(list(skip_bad_images([batch, batch], policy))) == 2
    assert [str(w.message) for w in record] == [
        f"skipping a bad image: {reason} (1 skipped so far)"
    ]
    with pytest.raises(UserError, match=r"the image does not decode .*skip_bad_images=true"):
        list(skip_bad_images([batch], BadImagePolicy(skip=False, num_images=len(data))))


def test_all_bad_batch_collates_to_empty() -> None:
    batch = collate_train([BadImage("a.jpg", "x")])
    assert isinstance(batch, ClassBatch) and len(batch.labels) == 0


def test_pixel_mean_image(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "c", per_batch=2, test=1)
    data = read_cifar10(root, "train")
    assert data.images is not None
    mean = pixel_mean_image(data, 32)
    assert mean.shape == (32, 32, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(mean[4, 9], data.images[:, 4, 9].mean(0), rtol=1e-6)
    make_imagefolder(tmp_path / "f", {"train": 1}, size=8)
    folder = read_imagefolder(tmp_path / "f", "train")
    assert folder.paths is not None
    stack = np.stack([decode_image(p) for p in folder.paths]).astype(np.float64)
    np.testing.assert_allclose(pixel_mean_image(folder, 8), stack.mean(0), rtol=1e-6)
