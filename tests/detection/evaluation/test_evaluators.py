"""VOC / COCO evaluators: the numbers of scoring their own files, also under torch.distributed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detection.evaluation.coco import evaluate_coco
from detection.evaluation.evaluator import COCOEvaluator, DatasetEvaluator, VOCEvaluator
from detection.evaluation.results import coco_results, read_voc_results
from detection.evaluation.voc import evaluate_voc
from detection.structures import Detections, ImageRecord

NAMES = ["a", "b", "c"]


def voc_inputs(voc_case) -> tuple[list[ImageRecord], list[Detections]]:
    records, per_image = voc_case(5, num_images=24, num_classes=3)
    dets = [
        Detections(torch.from_numpy(b).float(), torch.from_numpy(s).float(), torch.from_numpy(lab))
        for _, b, s, lab in per_image
    ]
    return records, dets


def coco_inputs(coco_case, tmp_path: Path):
    dataset, results = coco_case(2, num_images=20)
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(dataset))
    category_ids = [1, 3, 7, 12]
    records, dets = [], []
    for image in dataset["images"]:
        mine = [r for r in results if r["image_id"] == image["id"]]
        xywh = torch.tensor([r["bbox"] for r in mine], dtype=torch.float32).reshape(-1, 4)
        records.append(ImageRecord(image["id"], "x.jpg", image["width"], image["height"]))
        dets.append(
            Detections(
                torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1),
                torch.tensor([r["score"] for r in mine], dtype=torch.float32),
                torch.tensor([category_ids.index(r["category_id"]) for r in mine]),
            )
        )
    return dataset, ann_file, category_ids, records, dets


def run_batches(evaluator: DatasetEvaluator, records, dets, batch: int = 5) -> dict:
    evaluator.reset()
    for i in range(0, len(records), batch):
        evaluator.process(records[i : i + batch], dets[i : i + batch])
    return evaluator.evaluate()


@pytest.mark.parametrize("metric", ["voc07", "voc"])
def test_voc_evaluator_equals_scoring_its_own_files(voc_case, tmp_path, metric):
    records, dets = voc_inputs(voc_case)
    evaluator = VOCEvaluator(NAMES, metric, out_dir=tmp_path, split="val")
    result = run_batches(evaluator, records, dets)
    files = read_voc_results(tmp_path, "val", NAMES, {str(r.image_id) for r in records})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"comp4_det_val_{n}.txt" for n in NAMES]
    expected = evaluate_voc(records, files, NAMES, metric).to_dict()
    assert result == expected
    assert set(result) == {"mAP", "per_class", "mAP@[.5:.95]"}
    assert 0.2 < result["mAP"] < 1.0
    # reset forgets; processing an image twice (sampler padding) counts it once
    assert run_batches(evaluator, records + records[:3], dets + dets[:3]) == expected


def test_coco_evaluator_equals_evaluate_coco_on_its_json(coco_case, tmp_path):
    dataset, ann_file, category_ids, records, dets = coco_inputs(coco_case, tmp_path)
    out_json = tmp_path / "out" / "coco_results.json"
    evaluator = COCOEvaluator(ann_file, category_ids, "pycocotools", out_json=out_json)
    result = run_batches(evaluator, records, dets)
    entries = json.loads(out_json.read_text())
    assert entries == coco_results([r.image_id for r in records], dets, category_ids)
    expected = evaluate_coco(dataset, entries, "pycocotools").to_dict()
    assert json.dumps(result) == json.dumps(expected)  # (NaN != NaN; the text compares)
    assert set(result) == {
        "AP", "AP50", "AP75", "APs", "APm", "APl",
        "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "per_class",
    }  # fmt: skip


def test_coco_evaluator_scores_only_the_processed_images(coco_case, tmp_path):
    dataset, ann_file, category_ids, records, dets = coco_inputs(coco_case, tmp_path)
    evaluator = COCOEvaluator(ann_file, category_ids)
    result = run_batches(evaluator, records[:8], dets[:8])
    entries = coco_results([r.image_id for r in records[:8]], dets[:8], category_ids)
    ids = [r.image_id for r in records[:8]]
    assert result["AP"] == evaluate_coco(dataset, entries, "faster", image_ids=ids).stats["AP"]


def test_evaluators_reject_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown VOC metric 'voc12'"):
        VOCEvaluator(NAMES, "voc12")
    (tmp_path / "a.json").write_text('{"images": [], "categories": []}')
    with pytest.raises(ValueError, match="unknown COCO backend 'fast'"):
        COCOEvaluator(tmp_path / "a.json", [1], backend="fast")


def _distributed_worker(rank: int, folder: str, kind: str) -> None:
    """One rank: processes every other image (rank 1 also repeats image 0), then evaluates."""
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2
    )
    try:
        inputs = torch.load(f"{folder}/inputs.pt", weights_only=False)
        records, dets = inputs["records"], inputs["dets"]
        mine = list(range(rank, len(records), 2)) + ([0] if rank == 1 else [])
        if kind == "voc":
            evaluator: DatasetEvaluator = VOCEvaluator(NAMES, "voc07")
        else:
            evaluator = COCOEvaluator(inputs["ann_file"], inputs["category_ids"])
        result = run_batches(evaluator, [records[i] for i in mine], [dets[i] for i in mine], 3)
        Path(f"{folder}/rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_results_gathered_to_rank_zero(voc_case, coco_case, tmp_path, kind):
    if kind == "voc":
        records, dets = voc_inputs(voc_case)
        single = run_batches(VOCEvaluator(NAMES, "voc07"), records, dets)
        inputs = {"records": records, "dets": dets}
    else:
        _, ann_file, category_ids, records, dets = coco_inputs(coco_case, tmp_path)
        single = run_batches(COCOEvaluator(ann_file, category_ids), records, dets)
        inputs = {"records": records, "dets": dets, "ann_file": str(ann_file)}
        inputs["category_ids"] = category_ids
    torch.save(inputs, tmp_path / "inputs.pt")
    mp.spawn(_distributed_worker, args=(str(tmp_path), kind), nprocs=2, join=True)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    assert json.loads((tmp_path / "rank1.json").read_text()) == {}
    assert json.dumps(rank0) == json.dumps(single)  # (NaN != NaN; the text compares)
    assert np.isfinite(rank0["AP" if kind == "coco" else "mAP"])
