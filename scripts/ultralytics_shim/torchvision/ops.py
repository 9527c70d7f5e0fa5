"""`torchvision.ops.nms` for the Ultralytics venv: delegates to Ultralytics' own pure-torch NMS."""


def nms(boxes, scores, iou_threshold):
    """Indices (int64, by decreasing score) of the boxes kept by NMS; boxes (N, 4) xyxy, scores (N,)."""
    from ultralytics.utils.nms import TorchNMS  # imported lazily: `import torchvision` must not import ultralytics

    return TorchNMS.nms(boxes, scores, float(iou_threshold))
