"""Evaluation metrics, NumPy only: COCO box/mask AP (pycocotools-identical), VOC AP, semantic mIoU, panoptic PQ."""
from .coco import STAT_KEYS, CocoEvaluation, CocoParams, coco_evaluate, evaluate_coco

__all__ = ["STAT_KEYS", "CocoEvaluation", "CocoParams", "coco_evaluate", "evaluate_coco"]
from .panoptic import GtSegment, PanopticMeter, panoptic_from_semantic_and_instances
from .semantic import SemanticMeter, semantic_metrics
from .voc import voc_ap, voc_evaluate

__all__ += ["GtSegment", "PanopticMeter", "panoptic_from_semantic_and_instances", "SemanticMeter",
            "semantic_metrics", "voc_ap", "voc_evaluate"]
