"""Evaluation metrics, NumPy only: COCO box/mask AP (pycocotools-identical), VOC AP, semantic mIoU, panoptic PQ."""
from edgedet.metrics.coco import STAT_KEYS, CocoEvaluation, CocoParams, coco_evaluate, evaluate_coco

__all__ = ["STAT_KEYS", "CocoEvaluation", "CocoParams", "coco_evaluate", "evaluate_coco"]
from edgedet.metrics.panoptic import GtSegment, PanopticMeter, panoptic_from_semantic_and_instances
from edgedet.metrics.semantic import SemanticMeter, semantic_metrics
from edgedet.metrics.voc import voc_ap, voc_evaluate

__all__ += ["GtSegment", "PanopticMeter", "panoptic_from_semantic_and_instances", "SemanticMeter",
            "semantic_metrics", "voc_ap", "voc_evaluate"]
