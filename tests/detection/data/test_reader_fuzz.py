"""Property tests: a malformed VOC XML, COCO JSON, results file or split file gives the
project's one-line UserError (or reads), never another exception.

More random cases: ``RESDET_FUZZ=5000 pytest tests/detection/data/test_reader_fuzz.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection.data.coco import load_coco
from detection.data.voc import VOCLayout, load_voc, read_split_file
from detection.evaluation.results import load_coco_results, parse_voc_lines
from engine.errors import UserError

# `make test` replays the same 60 cases each run (derandomized, so CI cannot fail on a case
# no one has seen); RESDET_FUZZ=N explores N fresh random cases per test instead.
EXPLORE = int(os.environ.get("RESDET_FUZZ", "0"))
FUZZ = settings(
    max_examples=EXPLORE or 60,
    derandomize=not EXPLORE,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# JSON-ish values: what a broken or hostile annotation file can hold at any place
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip


def _reads_or_user_error(read) -> None:
    try:
        read()
    except UserError as exc:
        assert "\n" not in str(exc)


image = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 3), values),
     "file_name": st.one_of(st.just("a.jpg"), values),
     "width": st.one_of(st.integers(-2, 50), values),
     "height": st.one_of(st.integers(-2, 50), values)}
)  # fmt: skip
annotation = st.fixed_dictionaries(
    {"id": values, "image_id": st.one_of(st.integers(0, 3), values),
     "category_id": st.one_of(st.just(1), values),
     "bbox": st.one_of(st.lists(st.floats(allow_nan=True), max_size=5), values),
     "iscrowd": st.one_of(st.just(0), values)}
)  # fmt: skip
coco = st.fixed_dictionaries(
    {"images": st.one_of(st.lists(image, max_size=3), values),
     "annotations": st.one_of(st.lists(annotation, max_size=4), values),
     "categories": st.one_of(st.just([{"id": 1, "name": "a"}]), st.lists(values, max_size=2))}
)  # fmt: skip


@FUZZ
@given(data=st.one_of(coco, values))
def test_coco_reader(tmp_path_factory, data: object) -> None:
    path = tmp_path_factory.mktemp("coco") / "instances.json"
    path.write_text(json.dumps(data))
    _reads_or_user_error(lambda: load_coco(str(path), str(path.parent)))


text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
number = st.one_of(st.integers(-5, 1000).map(str), st.sampled_from(["inf", "nan", "1e999", "-0",
                                                                     "x", ""]), text)  # fmt: skip
xml = st.builds(
    lambda name, w, h, box, diff: (
        f"<annotation><filename>a.jpg</filename><size><width>{w}</width><height>{h}</height>"
        f"</size><object><name>{name}</name><difficult>{diff}</difficult><bndbox>"
        f"<xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax>"
        "</bndbox></object></annotation>"
    ),
    st.sampled_from(["a", "b", "", "&amp;"]), number, number,
    st.lists(number, min_size=4, max_size=4), number,
)  # fmt: skip


@FUZZ
@given(content=st.one_of(xml, text.map(lambda t: "<annotation>" + t)), raw=st.binary(max_size=20))
def test_voc_reader(tmp_path_factory, content: str, raw: bytes) -> None:
    root = tmp_path_factory.mktemp("voc")
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    (root / "Annotations/a.xml").write_bytes(content.encode("utf-8", "replace"))
    (root / "Annotations/b.xml").write_bytes(raw)
    (root / "ImageSets/Main/s.txt").write_text("a\n")
    (root / "ImageSets/Main/t.txt").write_text("b\n")
    for split in ("s", "t"):
        _reads_or_user_error(lambda split=split: load_voc(str(root), split, ["a"],
                                                          layout=VOCLayout()))  # fmt: skip


@FUZZ
@given(raw=st.binary(max_size=60))
def test_split_file(tmp_path_factory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("split") / "train.txt"
    path.write_bytes(raw)
    _reads_or_user_error(lambda: read_split_file(str(path)))


@FUZZ
@given(lines=st.lists(st.one_of(text, st.lists(number, min_size=6, max_size=6).map(" ".join)),
                      max_size=5))  # fmt: skip
def test_voc_results_lines(lines: list[str]) -> None:
    _reads_or_user_error(lambda: parse_voc_lines(lines, "comp4_det_test_a.txt", {"1", "x"}))


@FUZZ
@given(data=st.one_of(st.lists(st.one_of(annotation, values), max_size=3), values),
       raw=st.binary(max_size=30))  # fmt: skip
def test_coco_results_file(tmp_path_factory, data: object, raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("results")
    (folder / "r.json").write_text(json.dumps(data))
    (folder / "raw.json").write_bytes(raw)
    for name in ("r.json", "raw.json"):
        _reads_or_user_error(lambda name=name: load_coco_results(folder / name, {0, 1}, {1}))


def test_a_known_bad_case_is_named(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a", "width": 1e400}],
                                "categories": []}))  # fmt: skip
    with pytest.raises(UserError, match=r"instances.json: Infinity is not a JSON number"):
        load_coco(str(path), str(tmp_path))
