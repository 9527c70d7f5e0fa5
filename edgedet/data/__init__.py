"""Data sets without torch: the synthetic shapes generator, COCO and YOLO readers/writers, one Sample type.

Public names: Sample, Dataset, load_dataset, coco_gt_dict, read_coco, write_coco, read_yolo, write_yolo.
"""
from .coco import coco_gt_dict, read_coco, write_coco
from .loader import load_dataset
from .sample import Dataset, Sample
from .yolo import read_yolo, write_yolo

__all__ = ["Sample", "Dataset", "load_dataset", "coco_gt_dict", "read_coco", "write_coco", "read_yolo", "write_yolo"]
