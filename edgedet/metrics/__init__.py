"""Evaluation metrics, NumPy only: COCO box/mask AP (pycocotools-identical), VOC AP, semantic mIoU, panoptic PQ."""
from edgedet.metrics.coco import STAT_KEYS, CocoEvaluation, CocoParams, coco_evaluate, evaluate_coco

__all__ = ["STAT_KEYS", "CocoEvaluation", "CocoParams", "coco_evaluate", "evaluate_coco"]
