"""The config loader: YAML + base + --set, strict checking, round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backbones.pretrain.config import load_config as load_pretrain_config
from detection.config import Config, load_config
from engine.config import save_config
from engine.errors import UserError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_match_the_paper_head():
    cfg = load_config(None)
    assert cfg.model.anchors.sizes == [[128.0, 256.0, 512.0]]
    assert cfg.model.anchors.aspect_ratios == [0.5, 1.0, 2.0]
    assert cfg.model.rpn.post_nms_topk_test == 300
    assert cfg.data.test.splits == ["test"]  # the section default differs from the class default


def test_base_and_child_merge_key_by_key(tmp_path):
    write(tmp_path / "base.yaml", "seed: 3\nsolver: {base_lr: 0.01, max_iter: 100}\n")
    child = write(tmp_path / "run.yaml", "base: base.yaml\nsolver: {max_iter: 7}\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.solver.base_lr, cfg.solver.max_iter) == (3, 0.01, 7)
    assert cfg.solver.ims_per_batch == Config().solver.ims_per_batch


def test_a_chain_of_bases_merges_in_order_and_a_cycle_is_refused(tmp_path):
    write(tmp_path / "a.yaml", "seed: 1\nsolver: {base_lr: 0.5, max_iter: 9}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nseed: 2\nsolver: {max_iter: 8}\n")
    child = write(tmp_path / "c.yaml", "base: b.yaml\nsolver: {max_iter: 7}\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.solver.base_lr, cfg.solver.max_iter) == (2, 0.5, 7)
    write(tmp_path / "a.yaml", "base: c.yaml\n")
    with pytest.raises(UserError, match=r"a\.yaml: its base .*c\.yaml is already in the chain"):
        load_config(child)


def test_overrides_coerce_types():
    cfg = load_config(
        None,
        [
            "solver.base_lr=1e-3",
            "solver.steps=10,20",
            "input.min_size_train=[480, 512]",
            "solver.amp=true",
            "model.backbone.name=resnet101",
            "data.class_names=a,b",
            "model.anchors.sizes=[[32], [64]]",
            "solver.base_lr=2",  # an int where a float is expected is fine
        ],
    )
    assert cfg.solver.base_lr == 2.0 and isinstance(cfg.solver.base_lr, float)
    assert cfg.solver.steps == [10, 20]
    assert cfg.input.min_size_train == [480, 512]
    assert cfg.solver.amp is True
    assert cfg.model.backbone.name == "resnet101"
    assert cfg.data.class_names == ["a", "b"]
    assert cfg.model.anchors.sizes == [[32.0], [64.0]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  backbone:\n    nmae: resnet18\n",
         "unknown key 'model.backbone.nmae' (did you mean 'model.backbone.name'?)"),
        ("solver:\n  max_iter: ten\n", "key 'solver.max_iter' expects int, got 'ten'"),
        ("solver:\n  amp: 1\n", "key 'solver.amp' expects bool, got 1"),
        ("device: tpu\n", "key 'device' must be one of auto, cpu, cuda, got 'tpu'"),
        ("solver: [1, 2]\n", "key 'solver' must be a mapping"),
        ("seed: [1\n", "malformed YAML (line 2, column 1)"),
        ("- a\n- b\n", "expected a mapping of keys at the top, got list"),
    ],
)  # fmt: skip
def test_bad_files_name_the_key(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("solver.base_lrr=1", "unknown key 'solver.base_lrr' (did you mean 'solver.base_lr'?)"),
        ("solver=1", "'solver' is a section"),
        ("seed.x=1", "'seed' is not a section"),
        ("seed", "expected dotted.key=value"),
        ("solver.steps=a,b", "key 'solver.steps' expects int, got 'a'"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(UserError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_round_trip_through_saved_yaml(tmp_path):
    cfg = load_config(
        None, ["solver.steps=5,6", "data.train.splits=VOC2007/trainval,VOC2012/trainval"]
    )
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(tmp_path / "out" / "config.yaml") == cfg
    pre = load_pretrain_config(None, ["input.crop_size=32"])
    save_config(pre, tmp_path / "pre.yaml")
    assert load_pretrain_config(tmp_path / "pre.yaml") == pre
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_exponent_floats_read_as_floats(tmp_path):
    # plain YAML 1.1 would read "1e-3" as a string; configs write lrs like that all the time
    cfg = load_config(write(tmp_path / "lr.yaml", "solver:\n  base_lr: 1e-3\n"))
    assert cfg.solver.base_lr == 0.001


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("log_period=0", "key 'log_period' must be at least 1, got 0"),
        ("solver.ims_per_batch=0", "key 'solver.ims_per_batch' must be at least 1"),
        ("solver.checkpoint_period=-5", "must be at least 0, got -5"),
        ("input.min_size_train=[]", "key 'input.min_size_train' expects a non-empty list"),
        ("input.min_size_train=[600,0]",
         "key 'input.min_size_train' must be between 1 and 10000, got 0"),
        ("test.eval_period=-1", "key 'test.eval_period' must be at least 0"),
        ("test.box_voting_iou=1.5", "key 'test.box_voting_iou' must be between 0 and 1, got 1.5"),
        ("test.pyramid_sizes=[1000000000]",
         "key 'test.pyramid_sizes' must be between 1 and 10000, got 1000000000"),
        ("test.score_thresh=.nan", "key 'test.score_thresh' must be between 0 and 1, got nan"),
        ("test.nms_thresh=-0.1", "key 'test.nms_thresh' must be between 0 and 1"),
        ("model.rpn.iou_thresholds=[0.3,1.2]", "key 'model.rpn.iou_thresholds' must be between"),
        ("model.roi_heads.positive_fraction=2", "key 'model.roi_heads.positive_fraction' must be"),
        ("input.max_size_test=0", "key 'input.max_size_test' must be between 1 and 10000"),
        ("input.flip_prob=.inf", "key 'input.flip_prob' must be between 0 and 1, got inf"),
        ("solver.momentum=1.5", "key 'solver.momentum' must be between 0 and 1"),
        ("solver.base_lr=-0.1", "key 'solver.base_lr' must be at least 0"),
    ],
)  # fmt: skip
def test_values_are_range_checked_at_load(override: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(None, [override])


def test_non_utf8_config_is_one_line(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("output_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.yaml: not UTF-8 text \(byte 15\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("input.flip_prob=1.5", "key 'input.flip_prob' must be between 0 and 1, got 1.5"),
        ("input.test_scales=[224,0]", "key 'input.test_scales' must be between 1 and 10000"),
        ("input.crop_size=100000", "key 'input.crop_size' must be between 1 and 10000"),
        ("data.num_workers=-1", "key 'data.num_workers' must be at least 0"),
    ],
)
def test_pretrain_values_are_range_checked_at_load(override: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        load_pretrain_config(None, [override])


def test_a_range_violation_in_a_file_names_the_file_and_key(tmp_path) -> None:
    path = write(tmp_path / "bad.yaml", "test:\n  box_voting_iou: 1.5\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: key 'test.box_voting_iou' must be between 0 and 1, got 1.5"
    )


def test_trust_weights_comes_only_from_the_command_line(tmp_path) -> None:
    refused = write(tmp_path / "config.yaml", "trust_weights: true\n")
    with pytest.raises(UserError) as info:
        load_config(refused)
    assert str(info.value).startswith(f"{refused}: key 'trust_weights'")
    assert str(info.value).endswith("trust_weights is a command-line flag: --trust-weights")
    for value in ("true", "false"):  # --set is a command line, but one a config's docs copy
        with pytest.raises(UserError, match=r"--set: trust_weights is a command-line flag: --tr"):
            load_config(None, [f"trust_weights={value}"])
    old_run = write(tmp_path / "old.yaml", "trust_weights: false\nseed: 3\n")
    assert load_config(old_run).seed == 3  # run folders saved before the flag still load
    with pytest.raises(UserError, match="command-line flag"):
        load_pretrain_config(refused)


def test_a_saved_config_never_grants_trust(tmp_path) -> None:
    cfg = load_config(None)
    cfg.trust_weights = True  # what --trust-weights sets for this one process
    save_config(cfg, tmp_path / "config.yaml")
    assert "trust_weights: false" in (tmp_path / "config.yaml").read_text()
    assert cfg.trust_weights is True  # the running config is left as it was
    assert load_config(tmp_path / "config.yaml").trust_weights is False
