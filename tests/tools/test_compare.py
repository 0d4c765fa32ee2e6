"""`resdet compare`: runs land in the right cells of Tables 7 and 8."""

from __future__ import annotations

import json
from pathlib import Path

from detection.config import load_config
from engine.config import save_config
from tools import compare
from tools.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "detection"


def fake_run(tmp_path: Path, config: str, metrics: dict, folder: Path = CONFIGS) -> Path:
    run_dir = tmp_path / config
    cfg = load_config(folder / f"{config}.yaml")
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "eval_results.json").write_text(json.dumps({"metrics": metrics}))
    return run_dir


def test_cells_hold_ours_and_the_papers(tmp_path, capsys):
    runs = [
        fake_run(tmp_path, "faster_rcnn_vgg16_voc0712", {"voc07": {"mAP": 0.7312}}),
        fake_run(tmp_path, "faster_rcnn_r101_c4_voc0712", {"voc07": {"mAP": 0.76449}}),
        fake_run(tmp_path, "faster_rcnn_r101_c4_voc07plus12", {}),
        fake_run(tmp_path, "faster_rcnn_r101_c4_coco", {"coco": {"AP": 0.2704, "AP50": 0.4861}}),
    ]
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "| VGG-16 | 73.1 (73.2) | — (70.4) |" in out
    assert "| ResNet-101 | 76.4 (76.4) | n/a (73.8) |" in out
    assert "| ResNet-101 | 48.6 (48.4) | 27.0 (27.2) |" in out
    assert "| VGG-16 | — (41.5) | — (21.2) |" in out


def test_missing_results_is_a_one_line_error(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "faster_rcnn_vgg16_voc0712", {})
    (run_dir / "eval_results.json").unlink()
    assert main(["compare", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("eval_results.json: not found (run `resdet eval` for this run first)")
    assert "\n" not in err


def test_runs_on_other_data_get_a_table_of_their_own_with_mean_and_spread(tmp_path, capsys):
    mini = CONFIGS.parent / "mini"
    runs = [
        fake_run(tmp_path / f"s{seed}", name, {"voc07": {"mAP": v}, "coco": {"AP": a}}, mini)
        for seed, name, v, a in [
            (0, "faster_rcnn_vgg16_w16_raccoon", 0.70, 0.30),
            (1, "faster_rcnn_vgg16_w16_raccoon", 0.74, 0.32),
            (0, "faster_rcnn_r101_c4_w16_raccoon", 0.80, 0.36),
        ]
    ]
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "| VGG-16 | — (73.2) | — (70.4) |" in out  # the paper's tables stay empty
    assert "Same networks on data/raccoon test (not the paper's data)" in out
    # VGG: mean 72.0, sample std of 70 and 74 = 2.83; ResNet: one run
    assert "| VGG-16 | 2 | 72.0 ± 2.8 | 31.0 ± 1.4 | 73.2 | 21.2 |" in out
    assert "| ResNet-101 | 1 | 80.0 | 36.0 | 76.4 | 27.2 |" in out
    assert "| ResNet-101 − VGG-16 | | +8.0 | +5.0 | +3.2 | +6.0 |" in out


def test_a_malformed_results_file_is_one_line(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "faster_rcnn_vgg16_voc0712", {})
    (run_dir / "eval_results.json").write_text("[1, 2")
    assert main(["compare", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "eval_results.json: malformed JSON (line 1" in err and "\n" not in err


def test_systems_beyond_the_baseline_fill_tables_9_to_11(tmp_path, capsys):
    coco = {"coco": {"AP": 0.30, "AP50": 0.50}}
    plus = fake_run(tmp_path, "faster_rcnn_r101_c4_coco_plus", coco)
    refined = fake_run(tmp_path / "refined", "faster_rcnn_r101_c4_coco", coco)
    cfg = load_config(refined / "config.yaml", ["test.box_refinement=true"])
    save_config(cfg, refined / "config.yaml")
    odd = fake_run(
        tmp_path / "odd", "faster_rcnn_r101_c4_coco", coco
    )  # multi-scale alone: not a Table 9 row
    save_config(load_config(odd / "config.yaml", ["test.pyramid_sizes=[400]"]), odd / "config.yaml")
    voc = fake_run(tmp_path, "faster_rcnn_r101_c4_voc0712_plus", {"voc07": {"mAP": 0.8}})
    base = fake_run(tmp_path, "faster_rcnn_r101_c4_coco", {"coco": {"AP": 0.27, "AP50": 0.48}})
    assert main(["compare", *map(str, [plus, refined, odd, voc, base])]) == 0
    out = capsys.readouterr().out
    assert "| ResNet-101 | 48.0 (48.4) | 27.0 (27.2) |" in out  # Table 8: the baseline alone
    assert "| baseline | 48.0 (48.4) | 27.0 (27.2) |" in out  # and Table 9's first row
    assert "| + box refinement | 50.0 (49.9) | 30.0 (29.9) |" in out
    assert "| + context | — (51.1) | — (30.0) |" in out
    assert "| + multi-scale testing | 50.0 (53.8) | 30.0 (32.5) |" in out
    assert "| baseline + multi-scale testing | 50.0 (—) | 30.0 (—) |" in out
    assert "| baseline+++ | 80.0 (85.6) | — (83.8) |" in out  # Tables 10 / 11
    assert "| ResNet-101 | — (76.4) | — (73.8) |" in out  # not a Table 7 baseline


def test_system_names(tmp_path):
    cfg = load_config(CONFIGS / "faster_rcnn_r101_c4_coco.yaml")
    assert compare.system(cfg) == "baseline"
    assert compare.system(cfg, ["a.pth", "b.pth"]) == "ensemble"
    cfg.model.roi_heads.global_context = True
    assert compare.system(cfg) == "baseline + context"  # context without refinement
    plus = load_config(CONFIGS / "faster_rcnn_r101_c4_coco_plus.yaml")
    assert compare.system(plus) == "+ multi-scale testing"
    voc = load_config(CONFIGS / "faster_rcnn_r101_c4_voc0712_plus.yaml")
    assert compare.system(voc) == "baseline+++"


def test_compare_reads_what_resdet_writes_for_a_class_without_test_objects(tmp_path, capsys):
    from engine.runfolder import write_eval_results

    nan = float("nan")
    written = fake_run(tmp_path / "new", "faster_rcnn_vgg16_voc0712", {})
    metrics = {"voc07": {"mAP": 0.7312, "per_class": {"aeroplane": 0.8, "bus": nan}}}
    write_eval_results(written, metrics, {"mAP@.5": 0.7312}, 10, "model_final.pth")
    assert '"bus": null' in (written / "eval_results.json").read_text()  # strict JSON
    legacy = fake_run(tmp_path / "old", "faster_rcnn_r101_c4_voc0712", {})
    (legacy / "eval_results.json").write_text(  # what earlier versions wrote: NaN
        '{"metrics": {"voc07": {"mAP": NaN, "per_class": {"bus": NaN}}}, "headline": {}}'
    )
    assert main(["compare", str(written), str(legacy)]) == 0
    out = capsys.readouterr().out
    assert "| VGG-16 | 73.1 (73.2) |" in out and "| ResNet-101 | n/a (76.4) |" in out


def test_results_files_of_another_layout_are_one_line(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "faster_rcnn_vgg16_voc0712", {})
    for text in ("[]", '{"metrics": {"voc07": 1}}', '{"metrics": {}, "headline": {"a": "x"}}'):
        (run_dir / "eval_results.json").write_text(text)
        assert main(["compare", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert "eval_results.json: not an eval_results.json written by resdet (" in err
        assert err.count("\n") == 1


def test_the_bccd_miniature_table_with_he_init_controls_depth_and_classes(tmp_path, capsys):
    """Three seeds per cell: the gain with its spread, pretraining's value per network, the
    ResNet-50 row, per-class AP; He-init runs never fill the paper's tables."""
    mini = CONFIGS.parent / "mini"
    classes = ("RBC", "WBC", "Platelets")

    def run(name: str, seed: int, voc: float, coco: float, scratch: bool = False) -> Path:
        per_class = dict(zip(classes, (voc + 0.1, voc, voc - 0.1)))
        folder = tmp_path / f"{name}_{'he' if scratch else 'pre'}_{seed}"
        run_dir = fake_run(folder, name, {"voc07": {"mAP": voc, "per_class": per_class},
                                          "coco": {"AP": coco}}, mini)  # fmt: skip
        if scratch:
            cfg = load_config(run_dir / "config.yaml", ["model.backbone.weights="])
            save_config(cfg, run_dir / "config.yaml")
        return run_dir

    vgg, r50, r101 = (
        f"faster_rcnn_{n}_w16_tinyimagenet_bccd" for n in ("vgg16", "r50_c4", "r101_c4")
    )
    runs = [run(vgg, s, v, 0.40) for s, v in enumerate((0.70, 0.72, 0.74))]
    runs += [run(r101, s, v, 0.45) for s, v in enumerate((0.75, 0.78, 0.81))]
    runs += [run(r50, 0, 0.76, 0.44), run(r101, 0, 0.60, 0.30, scratch=True)]
    runs += [run(r101, 1, 0.62, 0.32, scratch=True)]
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "| ResNet-101 | — (76.4) | — (73.8) |" in out  # neither pretrained nor He init fill it
    assert "Same networks on data/BCCD test (not the paper's data)" in out
    assert "| VGG-16 | 3 | 72.0 ± 2.0 | 40.0 ± 0.0 | 73.2 | 21.2 |" in out
    assert "| ResNet-50 | 1 | 76.0 | 44.0 | — | — |" in out
    assert "| ResNet-101 | 3 | 78.0 ± 3.0 | 45.0 ± 0.0 | 76.4 | 27.2 |" in out
    assert "| ResNet-101, He init | 2 | 61.0 ± 1.4 | 31.0 ± 1.4 | — | — |" in out
    # +6.0 ± sqrt(2²/3 + 3²/3) = 2.08
    assert "| ResNet-101 − VGG-16 | | +6.0 ± 2.1 | +5.0 ± 0.0 | +3.2 | +6.0 |" in out
    # 78 - 61 ± sqrt(3²/3 + 1.414²/2) = 2.0
    assert "| ResNet-101: pretrained − He init | | +17.0 ± 2.0 | +14.0 ± 1.0 |  |  |" in out
    assert "| backbone | RBC | WBC | Platelets |" in out
    assert "| VGG-16 | 82.0 ± 2.0 | 72.0 ± 2.0 | 62.0 ± 2.0 |" in out
    assert "| ResNet-101, He init | 71.0 ± 1.4 | 61.0 ± 1.4 | 51.0 ± 1.4 |" in out
