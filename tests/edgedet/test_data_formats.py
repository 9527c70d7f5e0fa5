"""COCO and YOLO readers/writers, dataset.yaml, malformed input and the `edgedet data` CLI."""
import json
import shutil

import cv2
import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.cli import main
from edgedet.data import load_dataset, read_coco, read_yolo, write_coco, write_yolo
from edgedet.data.sample import mask_to_xyxy
from edgedet.data.synth import SynthConfig, THING_NAMES, write_split
from edgedet.data.yamlio import format_yaml, parse_yaml
from edgedet.rle import mask_to_polygons, mask_to_rle, polygons_to_mask, rle_compress, rle_decode


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    write_split(out, "val", 4, 1, SynthConfig(imgsz=96))
    return out


def _mask_iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _assert_same_samples(a, b, min_mask_iou):
    assert len(a) == len(b)
    for sa, sb in zip(a, b):
        assert sa.shape_hw == sb.shape_hw and np.array_equal(sa.class_ids, sb.class_ids)
        np.testing.assert_allclose(sa.xyxy, sb.xyxy, atol=0.01)
        for ma, mb in zip(sa.instance_masks(), sb.instance_masks()):
            assert _mask_iou(ma, mb) >= min_mask_iou
        assert np.array_equal(sa.semantic_map(), sb.semantic_map())


def test_round_trip_coco_to_yolo_to_samples(coco_dir, tmp_path):
    coco = read_coco(coco_dir / "annotations/instances_val.json")
    yaml_path = write_yolo(coco, tmp_path / "yolo", "val")
    assert sorted(p.name for p in (tmp_path / "yolo").iterdir()) == ["dataset.yaml", "images", "labels", "semantic"]
    yolo = load_dataset(yaml_path, "val")
    assert yolo.names == THING_NAMES and yolo.semantic_names == coco.semantic_names
    _assert_same_samples(coco, yolo, min_mask_iou=0.9)  # a YOLO polygon joins parts and holes by thin bridges
    back = tmp_path / "back.json"
    write_coco(yolo, back)
    _assert_same_samples(yolo, read_coco(back, images_dir=tmp_path / "yolo/images/val",
                                         semantic_dir=tmp_path / "yolo/semantic/val"), min_mask_iou=1.0)


def test_yolo_box_and_polygon_lines(tmp_path):
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images/train/a.png"), np.zeros((50, 100, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "images/train/b.png"), np.zeros((50, 100, 3), np.uint8))  # no label file: no objects
    (tmp_path / "labels/train/a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.102 0.104 0.298 0.104 0.298 0.496 0.102 0.496\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog]  # two classes\n")
    dataset = load_dataset(tmp_path / "data.yaml", "train")
    a, b = dataset.samples
    assert dataset.names == ["cat", "dog"] and len(b) == 0 and a.shape_hw == (50, 100)
    assert a.class_ids.tolist() == [1, 0]
    np.testing.assert_allclose(a.xyxy[0], [40, 15, 60, 35])
    np.testing.assert_allclose(a.xyxy[1], [10, 5, 30, 25])  # the pixels whose centres lie in the polygon
    masks = a.instance_masks()
    assert masks[0].sum() == 20 * 20 and masks[1].sum() == 20 * 20


def test_masks_rle_and_polygons_are_exact():
    mask = np.zeros((30, 40), bool)
    mask[3:12, 5:20] = True
    mask[20:28, 30:38] = True
    mask[0, 39] = True
    assert np.array_equal(rle_decode(mask_to_rle(mask)), mask)
    assert mask_to_rle(np.ones((2, 2), bool))["counts"] == [0, 4]
    assert np.array_equal(polygons_to_mask(mask_to_polygons(mask), mask.shape), mask)
    assert mask_to_xyxy(mask).tolist() == [5, 0, 40, 28]


def test_compressed_rle_and_polygon_segmentations_are_read(coco_dir, tmp_path):
    from edgedet.device.rle import rle_encode

    clean = load_dataset(coco_dir, "val")
    masks = clean[0].instance_masks()

    def edit(coco):
        first = [a for a in coco["annotations"] if a["image_id"] == clean[0].image_id]
        first[0]["segmentation"] = rle_encode(masks[0])
        first[1]["segmentation"] = mask_to_polygons(masks[1])

    dataset = load_dataset(_broken_copy(coco_dir, tmp_path, edit), "val")
    read = dataset[0].instance_masks()
    assert np.array_equal(read[0], masks[0])
    assert np.array_equal(read[1], _fill_holes(masks[1]))  # COCO polygons carry outlines, not holes
    assert dataset[0].instance_areas().tolist() == clean[0].instance_areas().tolist()  # the stored COCO areas


def _fill_holes(mask):
    """The mask plus every background pixel not connected to the image border."""
    padded = np.pad(mask, 1).astype(np.uint8)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood != 2)[1:-1, 1:-1]


def test_yaml_subset_reader():
    config = parse_yaml("# comment\npath: '../data'  # root\ntrain: images/train\nnames:\n  0: a b\n  1: 'c: d'\n"
                        "semantic_names:\n  - sky\n  - x\nnc: 2\nflag: true\nnothing:\n")
    assert config == {"path": "../data", "train": "images/train", "names": {0: "a b", 1: "c: d"},
                      "semantic_names": ["sky", "x"], "nc": 2, "flag": True, "nothing": None}
    data = {"path": "/tmp/x y", "names": {0: "1", 1: "null"}, "list": ["a", "#b"], "n": 3}
    assert parse_yaml(format_yaml(data)) == data
    with pytest.raises(EdgedetError, match="line 2"):
        parse_yaml("a: 1\nnot a mapping\n")


ULTRALYTICS_HEADER = """\
# Ultralytics YOLO, AGPL-3.0 license
# COCO8 dataset (first 8 images from COCO train2017) by Ultralytics
# Example usage: yolo train data=coco8.yaml

# Train/val/test sets as 1) dir: path/to/imgs, 2) file: path/to/imgs.txt, or 3) list: [path/to/imgs1, ..]
path: ../datasets/coco8 # dataset root dir
train: images/train # train images (relative to 'path')
val: images/val # val images (relative to 'path')
test: # test images (optional)

# Classes
"""
ULTRALYTICS_DOWNLOAD = """
# Download script/URL (optional)
download: |
  from ultralytics.utils.downloads import download
  from pathlib import Path

  # Download labels
  segments = True  # segment or box labels
  dir = Path(yaml['path'])  # dataset root dir
  url = 'https://github.com/ultralytics/assets/releases/download/v0.0.0/'
  urls = [url + ('coco2017labels-segments.zip' if segments else 'coco2017labels.zip')]  # labels
  download(urls, dir=dir.parent)
"""


@pytest.mark.parametrize("names_block", ["names:\n  0: person\n  1: bicycle\n  2: car\n",
                                         "names: ['person', 'bicycle', 'car']\n"])
def test_ultralytics_dataset_yaml_with_download_script(tmp_path, names_block):
    root = tmp_path / "datasets/coco8"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        cv2.imwrite(str(root / "images" / split / "0001.jpg"), np.zeros((40, 60, 3), np.uint8))
        (root / "labels" / split / "0001.txt").write_text("2 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.1 0.1\n")
    yaml_path = tmp_path / "cfg/coco8.yaml"
    yaml_path.parent.mkdir()
    yaml_path.write_text(ULTRALYTICS_HEADER + names_block + ULTRALYTICS_DOWNLOAD)
    for split in ("train", "val"):
        dataset = load_dataset(yaml_path, split)
        assert dataset.names == ["person", "bicycle", "car"] and len(dataset) == 1
        assert dataset[0].class_ids.tolist() == [2, 0] and dataset[0].shape_hw == (40, 60)
    config = parse_yaml(yaml_path.read_text())
    assert config["test"] is None and config["download"].startswith("from ultralytics.utils.downloads import")
    assert "\n\n  # Download labels" not in config["download"] and "# Download labels\n" in config["download"]


def test_malformed_yaml_is_one_line_naming_file_and_line(tmp_path):
    yaml_path = tmp_path / "dataset.yaml"
    yaml_path.write_text("path: .\ntrain: images/train\nnames: [a, b\nval: images/val\n")
    with pytest.raises(EdgedetError) as error:
        load_dataset(yaml_path, "train")
    message = str(error.value)
    assert message.startswith(f"{yaml_path}: line 3: ") and "\n" not in message
    yaml_path.write_text("- a\n- b\n")
    with pytest.raises(EdgedetError, match="dataset.yaml: expected 'key: value' lines at the top level"):
        load_dataset(yaml_path, "train")


def test_written_yaml_keeps_key_order_and_reads_back(tmp_path):
    from edgedet.data.yamlio import read_yaml, write_yaml

    data = {"path": "/data/set", "val": "images/val", "train": "images/train", "names": {0: "yes", 1: "1.5"},
            "semantic_names": ["sky", "road"], "imgsz": 320}
    write_yaml(tmp_path / "d.yaml", data, header="written by a test\nsecond line")
    text = (tmp_path / "d.yaml").read_text()
    assert text.startswith("# written by a test\n# second line\npath: /data/set\nval: images/val\n")
    assert "names:\n  0: 'yes'\n" in text  # a name YAML would read as a bool stays a string
    assert list(read_yaml(tmp_path / "d.yaml")) == list(data) and read_yaml(tmp_path / "d.yaml") == data


# ---- malformed input ------------------------------------------------------------------------------

def _broken_copy(coco_dir, tmp_path, edit):
    shutil.copytree(coco_dir, tmp_path / "ds")
    json_path = tmp_path / "ds/annotations/instances_val.json"
    coco = json.loads(json_path.read_text())
    edit(coco)
    json_path.write_text(json.dumps(coco))
    return json_path


@pytest.mark.parametrize("edit, record, problem", [
    (lambda c: c["images"][1].update(file_name="missing.jpg"), "image id 2 (missing.jpg)", "image file not found"),
    (lambda c: c["annotations"][0].update(bbox=[90, 10, 20, 5]), "annotation id 1", "outside the 96x96 image"),
    (lambda c: c["annotations"][2].update(category_id=42), "annotation id 3", "unknown category_id 42"),
    (lambda c: c["annotations"][1].update(bbox=[1, 2, 3]), "annotation id 2", "bbox must be 4 finite numbers"),
    (lambda c: c["annotations"][1].update(image_id=999), "annotation id 2", "unknown image_id 999"),
    (lambda c: c["annotations"][1]["segmentation"].update(size=[5, 5]), "annotation id 2", "size [96, 96]"),
    (lambda c: c["annotations"][1].update(segmentation=[[1, 2, 3]]), "annotation id 2", "list of polygons"),
])
def test_malformed_coco_names_file_record_and_problem(coco_dir, tmp_path, edit, record, problem):
    json_path = _broken_copy(coco_dir, tmp_path, edit)
    with pytest.raises(EdgedetError) as error:
        load_dataset(json_path)
    message = str(error.value)
    assert str(json_path) in message and record in message and problem in message and "\n" not in message
    dataset = load_dataset(json_path, skip_invalid=True)
    assert len(dataset.skipped) == 1 and record in dataset.skipped[0]
    clean = load_dataset(coco_dir, "val")
    dropped_instances = sum(len(s) for s in clean) - sum(len(s) for s in dataset)
    assert dropped_instances >= 1


def test_bad_json_names_the_position(tmp_path):
    path = tmp_path / "instances_val.json"
    path.write_text('{"images": [1, 2,, 3]}')
    with pytest.raises(EdgedetError, match=r"instances_val.json: bad JSON: .* line 1 column"):
        load_dataset(path)
    with pytest.raises(EdgedetError, match="no such file"):
        load_dataset(tmp_path / "nothing.json")


@pytest.mark.parametrize("line, problem", [
    ("7 0.5 0.5 0.1 0.1", "unknown class 7"),
    ("0 0.95 0.5 0.2 0.1", "outside the image"),
    ("0 0.5 0.5 0.1", "expected 'class cx cy w h'"),
    ("0 0.5 zero 0.1 0.1", "not numbers"),
    ("0 0.1 0.1 1.5 0.1 0.3 0.5", "polygon lies outside"),
])
def test_malformed_yolo_lines(tmp_path, line, problem):
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "labels/val").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images/val/x.jpg"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "labels/val/x.txt").write_text(f"1 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(EdgedetError) as error:
        read_yolo(tmp_path / "images/val", names=["a", "b"])
    assert "labels/val/x.txt: line 2: " in str(error.value) and problem in str(error.value)
    dataset = read_yolo(tmp_path / "images/val", names=["a", "b"], skip_invalid=True)
    assert len(dataset.skipped) == 1 and dataset[0].class_ids.tolist() == [1]


# ---- CLI ------------------------------------------------------------------------------------------

def test_cli_convert_and_info(coco_dir, tmp_path, capsys):
    assert main(["data", "convert", str(coco_dir / "annotations/instances_val.json"), "--to", "yolo",
                 "--out", str(tmp_path / "y")]) == 0
    assert main(["data", "convert", str(tmp_path / "y"), "--from", "yolo", "--to", "coco", "--out", str(tmp_path / "c")]) == 0
    assert main(["data", "info", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "val: 4 images" in out and "circle" in out
    _assert_same_samples(load_dataset(coco_dir, "val"), load_dataset(tmp_path / "c", "val"), min_mask_iou=0.9)


def test_cli_reports_malformed_input_in_one_line_and_skips_on_request(coco_dir, tmp_path, capsys):
    json_path = _broken_copy(coco_dir, tmp_path, lambda c: c["annotations"][0].update(category_id=9))
    assert main(["data", "info", str(json_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgedet data info: error: ") and "unknown category_id 9" in err and "\n" not in err
    assert main(["data", "info", str(json_path), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "1 skipped records" in captured.out and "unknown category_id 9" in captured.err


def test_cli_rejects_wrong_source_format_and_missing_subcommand(coco_dir, tmp_path, capsys):
    assert main(["data", "convert", str(coco_dir), "--from", "yolo", "--to", "coco", "--out", str(tmp_path)]) == 2
    assert "--from yolo given, but this is COCO data" in capsys.readouterr().err
    assert main(["data"]) == 2
    assert "choose a subcommand" in capsys.readouterr().err


def test_yolo_folder_without_yaml_names_classes_by_index(tmp_path):
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "labels/val").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images/val/x.jpg"), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "images/val/broken.jpg").write_bytes(b"not an image")
    (tmp_path / "labels/val/x.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    with pytest.raises(EdgedetError, match="image broken.jpg: cannot read image"):
        load_dataset(tmp_path, "val")
    dataset = load_dataset(tmp_path, "val", skip_invalid=True)
    assert dataset.names == ["0", "1", "2"] and len(dataset) == 1 and len(dataset.skipped) == 1
    with pytest.raises(EdgedetError, match="no dataset.yaml, annotations/instances_train.json or images/train"):
        load_dataset(tmp_path, "train")


def test_coco_json_with_unguessable_image_folder_asks_for_it(coco_dir, tmp_path):
    json_path = tmp_path / "elsewhere.json"
    shutil.copyfile(coco_dir / "annotations/instances_val.json", json_path)
    with pytest.raises(EdgedetError, match="cannot find the image folder"):
        load_dataset(json_path)
    dataset = load_dataset(json_path, images_dir=coco_dir / "val/images")
    assert len(dataset) == 4 and dataset[0].semantic_path is not None


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 20, 2))
    mask = rng.random(shape) < rng.random()
    rle = mask_to_rle(mask)
    assert sum(rle["counts"]) == mask.size and rle["size"] == list(shape)
    assert np.array_equal(rle_decode(rle), mask)
    assert np.array_equal(rle_decode(rle_compress(rle)), mask)  # compressed as results are, it reads back the same


def test_convert_of_a_missing_source_says_so(tmp_path, capsys):
    assert main(["data", "convert", str(tmp_path / "nodata"), "--to", "yolo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgedet data convert: error: {tmp_path / 'nodata'} does not exist (a data set folder, dataset.yaml or COCO JSON)"
