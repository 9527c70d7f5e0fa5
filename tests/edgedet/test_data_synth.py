"""The synthetic generator: determinism, annotation correctness, the written folder and load_dataset on it."""
import json

import numpy as np
import pytest

from edgedet.device.errors import EdgedetError

from edgedet.data import coco_gt_dict, load_dataset
from edgedet.data.sample import mask_to_xyxy
from edgedet.rle import rle_decode
from edgedet.data.synth import SEMANTIC_NAMES, STUFF_NAMES, THING_NAMES, SynthConfig, make_scene, write_split

SMALL = SynthConfig(imgsz=128)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    from edgedet.cli import main

    assert main(["data", "synth", "--out", str(out), "--train", "4", "--val", "3", "--imgsz", "128", "--seed", "5"]) == 0
    return out


def test_same_seed_gives_identical_scenes_and_other_seed_differs():
    a, b = make_scene(3, "train", 7, SMALL), make_scene(3, "train", 7, SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.semantic, b.semantic)
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(make_scene(4, "train", 7, SMALL).image, a.image)
    assert not np.array_equal(make_scene(3, "val", 7, SMALL).image, a.image)


def test_written_split_is_byte_identical_for_the_same_seed(tmp_path):
    first = write_split(tmp_path / "a", "val", 3, 11, SMALL)
    second = write_split(tmp_path / "b", "val", 3, 11, SMALL)
    assert first.read_bytes() == second.read_bytes()
    for name in ("000000.jpg", "000002.jpg"):
        assert (tmp_path / "a/val/images" / name).read_bytes() == (tmp_path / "b/val/images" / name).read_bytes()
    assert (tmp_path / "a/val/semantic/000001.png").read_bytes() == (tmp_path / "b/val/semantic/000001.png").read_bytes()


@pytest.mark.parametrize("index", range(6))
def test_scene_masks_are_visible_disjoint_and_large_enough(index):
    cfg = SynthConfig(imgsz=160)
    scene = make_scene(0, "train", index, cfg)
    assert scene.image.shape == (160, 160, 3) and scene.image.dtype == np.uint8
    assert len(scene.class_ids) >= 1
    assert scene.masks.sum(axis=0).max() <= 1  # visible masks never overlap
    for mask, class_id in zip(scene.masks, scene.class_ids):
        x1, y1, x2, y2 = mask_to_xyxy(mask)
        assert min(x2 - x1, y2 - y1) >= cfg.min_visible_side
        assert np.all(scene.semantic[mask] == len(STUFF_NAMES) + class_id)
    stuff = ~scene.masks.any(axis=0)
    assert np.all(scene.semantic[stuff] < len(STUFF_NAMES))


def test_coco_annotations_match_their_masks(synth_dir):
    coco = json.loads((synth_dir / "annotations/instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == THING_NAMES
    assert coco["semantic_names"] == SEMANTIC_NAMES
    assert len(coco["images"]) == 4 and coco["annotations"]
    for ann in coco["annotations"]:
        mask = rle_decode(ann["segmentation"])
        assert ann["area"] == mask.sum() and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        assert list(mask_to_xyxy(mask)) == [x, y, x + w, y + h]  # the box encloses the mask exactly


def test_load_dataset_reads_the_synth_folder_and_its_yaml(synth_dir):
    for source in (synth_dir, synth_dir / "dataset.yaml", synth_dir / "annotations/instances_val.json"):
        dataset = load_dataset(source, "val")
        assert dataset.names == THING_NAMES and dataset.semantic_names == SEMANTIC_NAMES
        assert len(dataset) == 3 and dataset.skipped == []
    sample = dataset[0]
    image, masks, semantic = sample.load_image(), sample.instance_masks(), sample.semantic_map()
    assert image.shape == (128, 128, 3) and semantic.shape == (128, 128) and masks.shape == (len(sample), 128, 128)
    assert semantic.max() < len(SEMANTIC_NAMES)
    for box, mask, area in zip(sample.xyxy, masks, sample.instance_areas()):
        assert np.array_equal(mask_to_xyxy(mask), box) and mask.sum() == area
        assert np.all(semantic[mask] >= len(STUFF_NAMES))


def test_coco_gt_dict_round_trips_the_annotations(synth_dir):
    dataset = load_dataset(synth_dir, "train")
    gt = coco_gt_dict(dataset)
    source = json.loads((synth_dir / "annotations/instances_train.json").read_text())
    assert [a["bbox"] for a in gt["annotations"]] == [a["bbox"] for a in source["annotations"]]
    assert [a["area"] for a in gt["annotations"]] == [a["area"] for a in source["annotations"]]
    assert [a["category_id"] for a in gt["annotations"]] == [a["category_id"] for a in source["annotations"]]
    assert gt["categories"] == [{"id": i + 1, "name": n} for i, n in enumerate(THING_NAMES)]
    assert {i["id"] for i in gt["images"]} == {a["image_id"] for a in gt["annotations"]} | {i["id"] for i in gt["images"]}


def test_either_split_may_be_empty(tmp_path):
    from edgedet.cli import main

    assert main(["data", "synth", "--out", str(tmp_path), "--train", "0", "--val", "1", "--imgsz", "64"]) == 0
    assert not (tmp_path / "annotations/instances_train.json").exists()
    assert len(load_dataset(tmp_path, "val")) == 1
    with pytest.raises(EdgedetError, match="no 'train' entry"):
        load_dataset(tmp_path, "train")


def test_parallel_workers_write_the_same_files(tmp_path):
    serial = write_split(tmp_path / "serial", "train", 5, 2, SMALL, workers=1)
    parallel = write_split(tmp_path / "parallel", "train", 5, 2, SMALL, workers=2)
    assert serial.read_bytes() == parallel.read_bytes()
    for index in range(5):
        name = f"{index:06d}.jpg"
        assert (tmp_path / "serial/train/images" / name).read_bytes() == (tmp_path / "parallel/train/images" / name).read_bytes()


@pytest.mark.parametrize("imgsz, problem", [("100", "a multiple of 32"), ("32", "at least 64"),
                                            ("64,128", "square"), ("abc", "one or two integers")])
def test_synth_rejects_a_bad_imgsz_in_one_line(tmp_path, capsys, imgsz, problem):
    from edgedet.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--imgsz", imgsz, "--train", "1", "--val", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgedet data synth: error: --imgsz '{imgsz}': ") and problem in err and "\n" not in err
    assert not (tmp_path / "s").exists()
