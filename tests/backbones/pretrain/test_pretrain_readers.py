"""Readers on generated trees in the real layouts: Tiny ImageNet-200, CIFAR-10's pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from pretrain_helpers import make_cifar10, make_tinyimagenet

from backbones.pretrain.readers import read_cifar10, read_splits, read_tinyimagenet
from engine.errors import UserError
from engine.images import decode_image

WNIDS = ("n01443537", "n09999999", "n02124075")


def test_tinyimagenet_train_and_val_as_distributed(tmp_path: Path) -> None:
    root = make_tinyimagenet(tmp_path / "tiny-imagenet-200", train=2, val=5, wnids=WNIDS)
    train = read_tinyimagenet(root, "train")
    assert train.classes == list(WNIDS)  # wnids.txt order, not sorted
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.paths is not None and train.paths[2].endswith(
        "train/n09999999/images/n09999999_0.JPEG"
    )
    assert decode_image(train.paths[0]).shape == (64, 64, 3)
    val = read_tinyimagenet(root, "val")
    # val_i is class len-1-(i % 3): labels from val_annotations.txt alone
    assert val.labels.tolist() == [2, 1, 0, 2, 1]
    assert val.paths is not None and val.paths[4].endswith("val/images/val_4.JPEG")
    assert val.descriptions == {w: f"shape {s}, {i}" for i, (w, s) in
                                enumerate(zip(WNIDS, ("circle", "cross", "square")))}  # fmt: skip
    both = read_splits("tinyimagenet", str(root), ["train", "val"])
    assert len(both) == 11 and both.classes == list(WNIDS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: (r / "wnids.txt").unlink(), r"wnids.txt: Tiny ImageNet wnids.txt not found"),
        (
            lambda r: (r / "wnids.txt").write_text("n1\nn1\n"),
            r"wnids.txt:2: wnid 'n1' is listed twice",
        ),
        (lambda r: (r / "wnids.txt").write_text("\n"), r"wnids.txt: no wnids"),
        (
            lambda r: (r / "wnids.txt").write_text("../../etc\n"),
            r"wnids.txt:1: '../../etc' holds a '/'",
        ),
        (
            lambda r: (r / "wnids.txt").write_text("n01443537\nn00000001\n"),
            r"train/n00000001/images: class folder not found \(wnids.txt lists n00000001",
        ),
        (
            lambda r: [p.unlink() for p in (r / "train/n01443537/images").iterdir()],
            r"n01443537/images: empty class folder",
        ),
    ],
)
def test_tinyimagenet_train_errors_name_the_file(tmp_path: Path, change, message: str) -> None:
    root = make_tinyimagenet(tmp_path / "t", train=1, val=2)
    change(root)
    with pytest.raises(UserError, match=message):
        read_tinyimagenet(root, "train")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("val_0.JPEG n01443537 0 0 5 5", r"val_annotations.txt:2: 1 tab-separated fields"),
        (
            "val_0.JPEG\tn07777777\t0\t0\t5\t5",
            r"val_annotations.txt:2: wnid 'n07777777' is not in wnids.txt",
        ),
        (
            "val_9.JPEG\tn01443537\t0\t0\t5\t5",
            r"val_annotations.txt:2: image .*val_9.JPEG not found",
        ),
        (
            "../../train/n01443537/images/n01443537_0.JPEG\tn01443537\t0\t0\t5\t5",
            r"val_annotations.txt:2: '\.\./\.\./train.*' holds a '/'",
        ),
        (
            "/etc/hostname\tn01443537\t0\t0\t5\t5",
            r"val_annotations.txt:2: '/etc/hostname' is an absolute path",
        ),
    ],
)
def test_tinyimagenet_val_errors_name_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    root = make_tinyimagenet(tmp_path / "t", train=1, val=1)
    ann = root / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + line + "\n")
    with pytest.raises(UserError, match=message):
        read_tinyimagenet(root, "val")


def test_tinyimagenet_refuses_the_unlabelled_test_split_and_missing_annotations(
    tmp_path: Path,
) -> None:
    root = make_tinyimagenet(tmp_path / "t", train=1, val=1)
    no_labels = r"split 'test' is not known; expected train or val \(Tiny ImageNet's test split"
    with pytest.raises(UserError, match=no_labels):
        read_tinyimagenet(root, "test")
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(
        UserError, match=r"val_annotations.txt: Tiny ImageNet annotation file not found"
    ):
        read_tinyimagenet(root, "val")
    (root / "words.txt").write_text("n01443537 no tab\n")
    with pytest.raises(UserError, match=r"words.txt:1: expected 'wnid<TAB>words'"):
        read_tinyimagenet(root, "train")


class _Payload:
    """Unpickling this runs os.system (a planted CIFAR file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["batches.meta", "data_batch_3", "test_batch"])
def test_cifar10_pickles_cannot_run_code(tmp_path: Path, name: str) -> None:
    root = make_cifar10(tmp_path / "c", per_batch=2, test=2)
    marker = tmp_path / "pwned"
    with (root / name).open("wb") as f:
        pickle.dump({b"data": _Payload(marker), b"label_names": [_Payload(marker)]}, f, protocol=2)
    split = "test" if name == "test_batch" else "train"
    with pytest.raises(UserError, match=rf"{name}: not a CIFAR-10 python pickle \(refused global "
                                        r"(posix|os)\.system"):  # fmt: skip
        read_cifar10(root, split)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_restricted_unpickler_reads_every_protocol(tmp_path: Path, protocol: int) -> None:
    root = make_cifar10(tmp_path / "c", per_batch=2, test=3)
    data = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    raw = {b"data": data, b"labels": [0, 1, 2]}
    with (root / "test_batch").open("wb") as f:
        pickle.dump(raw, f, protocol=protocol)
    test = read_cifar10(root, "test")
    assert test.images is not None and test.labels.tolist() == [0, 1, 2]
    # pixel (row 5, col 7) of image 2: the red, green and blue planes of its 3072 bytes
    assert test.images[2, 5, 7].tolist() == [data[2, c * 1024 + 5 * 32 + 7] for c in range(3)]
    raw[b"data"] = data.astype(np.float64)
    with (root / "test_batch").open("wb") as f:
        pickle.dump(raw, f, protocol=protocol)
    with pytest.raises(
        UserError, match=r"test_batch: 'data' is \(3, 3072\); expected a \(N, 3072\) uint8"
    ):
        read_cifar10(root, "test")
