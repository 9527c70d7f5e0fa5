"""Validation during training: the model's raw outputs go through the device runtime's own preprocess and
postprocess (the same decode, NMS and masks `edgedet run` uses), then the project's COCO evaluator and mIoU.
The two-stage model is validated through its PyTorch `predict` instead (its second stage runs on the device only
from an exported file, with the heads inside it), on the same preprocessing, with its boxes mapped back and its 28x28 masks pasted into the frame by the device's code.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

from edgedet.device.detections import Detections
from edgedet.device.masks import paste_box_masks
from edgedet.device.postprocessing import postprocess, postprocess_semantic
from edgedet.device.preprocessing import preprocess
from edgedet.device.spec import ModelSpec
from .data import coco_gt_dict
from .metrics import SemanticMeter, coco_evaluate
from .models.family import RCNN, family_of_config

VAL_CONF = 0.005  # score threshold of validation detections (low, for the whole precision-recall curve)
VAL_IOU = 0.6  # NMS IoU threshold during validation
VAL_MAX_DET = 100  # detections kept per image during validation


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, images_bgr: Sequence[np.ndarray], spec: ModelSpec):
    """Run `model` on a batch of BGR frames -> (per-image dict name -> (1, ...) float32 arrays, letterboxes)."""
    images, letterboxes = batch_inputs(model, images_bgr, spec)
    outputs = [out.float().cpu() for out in model(images)]
    names = model.output_names
    per_image = [{name: out[i:i + 1].numpy() for name, out in zip(names, outputs)} for i in range(len(images))]
    return per_image, letterboxes


def batch_inputs(model: torch.nn.Module, images_bgr: Sequence[np.ndarray], spec: ModelSpec):
    """BGR frames -> (the batch (B, 3, H, W) on the model's device, one letterbox per frame), by the runtime's own
    preprocessing."""
    inputs, boxes = zip(*(preprocess(image, spec) for image in images_bgr))
    device = next(model.parameters()).device
    return torch.from_numpy(np.concatenate(inputs)).to(device), list(boxes)


def validate(model: torch.nn.Module, dataset, spec: ModelSpec, batch_size: int = 16) -> Dict[str, float]:
    """Box and mask COCO AP (edgedet.metrics.coco_evaluate) and semantic mIoU of `model` on a Dataset split.

    Returns {"box/AP", "box/AP50", ... (the 12 COCO stats), "mask/..." with instance masks, "semantic/mIoU" with a
    seg head}.
    """
    if family_of_config(model.config) == RCNN:
        return validate_two_stage(model, dataset, spec, batch_size)
    was_training = model.training
    model.eval()
    results: List[dict] = []
    num_semantic = len(spec.semantic_names) if spec.seg_output else 0
    meter = SemanticMeter(num_semantic) if num_semantic else None
    samples = dataset.samples
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        outputs, letterboxes = predict_outputs(model, [s.load_image() for s in batch], spec)
        for sample, out, box in zip(batch, outputs, letterboxes):
            detections = postprocess(out, spec, box, conf=VAL_CONF, iou=VAL_IOU, max_det=VAL_MAX_DET)
            results += detections.to_coco(sample.image_id, dataset.category_ids)
            if num_semantic:
                meter.update(postprocess_semantic(out, spec, box), sample.semantic_map())
    model.train(was_training)
    gt = coco_gt_dict(dataset)
    metrics = {f"box/{k}": float(v) for k, v in coco_evaluate(gt, results, "bbox").items()}
    if spec.proto_output:
        metrics.update({f"mask/{k}": float(v) for k, v in coco_evaluate(gt, results, "segm").items()})
    if num_semantic:
        metrics["semantic/mIoU"] = meter.compute()["mIoU"]
    return metrics


@torch.no_grad()
def two_stage_detections(model: torch.nn.Module, images_bgr: Sequence[np.ndarray], spec: ModelSpec) -> List[Detections]:
    """The two-stage model's `predict` on a batch of BGR frames -> per frame `Detections` in frame pixels with
    masks at frame size (validation thresholds)."""
    images, boxes = batch_inputs(model, images_bgr, spec)
    predictions = model.predict(images, score_threshold=VAL_CONF, iou=VAL_IOU, max_det=VAL_MAX_DET)
    results = []
    for prediction, letterbox in zip(predictions, boxes):
        xyxy = letterbox.boxes_to_original(prediction["xyxy"].cpu().numpy())
        mask_boxes = letterbox.boxes_to_original(prediction["mask_boxes"].cpu().numpy())  # what the masks cover
        masks = paste_box_masks(prediction["masks"].cpu().numpy() - 0.5, mask_boxes, letterbox.src_hw)  # p > 0.5
        results.append(Detections(xyxy.astype(np.float32), prediction["scores"].cpu().numpy().astype(np.float32),
                                  prediction["class_ids"].cpu().numpy().astype(np.int32), masks))
    return results


def validate_two_stage(model: torch.nn.Module, dataset, spec: ModelSpec, batch_size: int = 16) -> Dict[str, float]:
    """Box and mask COCO AP of the two-stage model on a Dataset split, as `validate` returns them."""
    results: List[dict] = []
    samples = dataset.samples
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        for sample, detections in zip(batch, two_stage_detections(model, [s.load_image() for s in batch], spec)):
            results += detections.to_coco(sample.image_id, dataset.category_ids)
    gt = coco_gt_dict(dataset)
    metrics = {f"box/{k}": float(v) for k, v in coco_evaluate(gt, results, "bbox").items()}
    metrics.update({f"mask/{k}": float(v) for k, v in coco_evaluate(gt, results, "segm").items()})
    return metrics
