"""Real photos end to end (../shared/data/raccoon): a few training iterations, evaluation,
Predictor, and a truncated JPEG met by the same bad-image policy in both pipelines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tool_helpers import QUICKSTART, tiny_overrides

from backbones.pretrain.data import BadImage, TrainDataset
from backbones.pretrain.readers import read_imagefolder
from detection.config import load_config
from detection.data.loader import BadSample, DetectionDataset
from detection.data.transforms import TestTransform
from detection.data.voc import VOCLayout, load_voc
from detection.predictor import Predictor
from engine.errors import DataWarning
from engine.images import decode_image
from tools.cli import main


@pytest.fixture
def raccoon(raccoon_photos: Path, tmp_path: Path) -> Path:
    """A writable copy of the twelve photos with split files made by `resdet split-dataset`."""
    root = tmp_path / "raccoon"
    shutil.copytree(raccoon_photos, root)
    assert main(["split-dataset", str(root), "--ann-dir", "annotations",
                 "--fractions", "train=0.75,test=0.25"]) == 0  # fmt: skip
    return root


def raccoon_overrides(root: Path, out: Path, **changes: object) -> list[str]:
    folder = {"format": "voc", "root": root, "image_dir": "images", "ann_dir": "annotations"}
    sets = {f"data.{split}.{k}": v for split in ("train", "test") for k, v in folder.items()}
    sets.update({"data.train.splits": "[train]", "data.test.splits": "[test]",
                 "data.class_names": "[raccoon]", "model.num_classes": 1, **changes})  # fmt: skip
    return tiny_overrides(root, out, **sets)


def test_train_eval_and_predict_on_real_photos(raccoon: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--config", str(QUICKSTART), *raccoon_overrides(raccoon, out)]) == 0
    losses = [line for line in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if "total_loss" in line]  # fmt: skip
    assert len(losses) == 6 and all(np.isfinite(line["total_loss"]) for line in losses)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_images"] == 3 and set(results["headline"]) == {"mAP@.5", "mAP@[.5,.95]"}
    cfg = load_config(out / "config.yaml")
    predictor = Predictor(cfg, out / "model_final.pth")
    assert predictor.class_names == ["raccoon"]  # from the checkpoint
    image = decode_image(str(raccoon / "images/raccoon-31.jpg"))
    detections = predictor(image)
    assert detections.boxes.shape[1] == 4 and len(detections.boxes) <= cfg.test.detections_per_image
    assert (detections.boxes[:, 2] <= 236 + 1e-3).all() and (detections.boxes[:, 3] <= 214).all()
    assert set(detections.labels.tolist()) <= {0}


def test_a_truncated_jpeg_is_skipped_during_training(raccoon: Path, tmp_path: Path) -> None:
    train_ids = (raccoon / "ImageSets/Main/train.txt").read_text().split()
    victim = raccoon / "images" / f"{train_ids[0]}.jpg"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    overrides = raccoon_overrides(raccoon, tmp_path / "run", **{"solver.max_iter": 8})
    with pytest.warns(DataWarning, match=rf"{victim.name}: truncated JPEG"):
        assert main(["train", "--config", str(QUICKSTART), *overrides]) == 0


def test_both_pipelines_give_a_truncated_jpeg_the_same_reason(raccoon: Path, tmp_path) -> None:
    source = raccoon / "images/raccoon-39.jpg"
    folder = tmp_path / "classes"
    for name in ("raccoon", "other"):
        (folder / "train" / name).mkdir(parents=True)
        shutil.copy(source, folder / "train" / name / "photo.jpg")
    torn = folder / "train/raccoon/photo.jpg"
    torn.write_bytes(source.read_bytes()[:-1000])
    data = read_imagefolder(folder, "train")
    classification = TrainDataset(data, lambda image, seed: torch.zeros(3, 2, 2))
    item = classification[(data.paths.index(str(torn)) if data.paths else 0, 0)]
    shutil.copy(torn, source)
    record = next(r for r in load_voc(str(raccoon), "train", ["raccoon"],
                                      layout=VOCLayout("images", "annotations"))
                  + load_voc(str(raccoon), "test", ["raccoon"],
                             layout=VOCLayout("images", "annotations"))
                  if r.image_id == "raccoon-39")  # fmt: skip
    sample = DetectionDataset([record], TestTransform(96, 128, "RGB", [0.0] * 3, [1.0] * 3))[0]
    assert isinstance(item, BadImage) and isinstance(sample, BadSample)
    assert item.reason == f"{torn}: truncated JPEG (no end-of-image marker)"
    assert sample.reason == f"{source}: truncated JPEG (no end-of-image marker)"


def test_browse_draws_the_ground_truth(raccoon: Path, tmp_path: Path, capsys) -> None:
    import cv2

    out = tmp_path / "browse"
    overrides = raccoon_overrides(raccoon, tmp_path / "unused")
    assert main(["browse", "--config", str(QUICKSTART), *overrides, "--split", "test",
                 "--out", str(out)]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip().endswith(f"3 of 3 images of data.test drawn in {out}")
    test_ids = (raccoon / "ImageSets/Main/test.txt").read_text().split()
    assert sorted(p.stem for p in out.glob("*.jpg")) == sorted(test_ids)
    photo = decode_image(str(raccoon / "images" / f"{test_ids[0]}.jpg"))
    drawn = cv2.cvtColor(cv2.imread(str(out / f"{test_ids[0]}.jpg")), cv2.COLOR_BGR2RGB)
    assert drawn.shape == photo.shape and np.abs(drawn.astype(int) - photo).max() > 100  # boxes


def test_dataset_stats_on_real_photos(raccoon: Path, tmp_path: Path, capsys) -> None:
    overrides = raccoon_overrides(raccoon, tmp_path / "unused")
    assert main(["dataset-stats", "--config", str(QUICKSTART), *overrides]) == 0
    text = capsys.readouterr().out
    assert text.startswith("data.train: 9 images (0 without objects), 9 objects, 0 ignored")
    assert "  raccoon             9" in text and "anchor coverage: " in text
