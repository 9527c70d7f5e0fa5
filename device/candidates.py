"""`Candidates` and what every layout's decode shares: detections before NMS, the logistic function, the best
class of a score table, and dequantization of integer outputs."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import EdgedetError
from .preprocessing import dequantize
from .spec import ModelSpec, QuantParams


@dataclass(frozen=True)
class Candidates:
    """N candidate detections before NMS, in network-input pixels.

    xyxy:       float32 (N, 4) corners in network-input pixels.
    scores:     float32 (N,) confidence of the best class (objectness x class probability where there is one).
    class_ids:  int32 (N,) best class.
    mask_coefs: float32 (N, M) instance-mask coefficients, or None for detectors without masks; with mask_boxes,
                each row is a box mask's m x m logits (Mask R-CNN), M = m * m.
    mask_boxes: float32 (N, 4) xyxy network-input boxes the box masks cover (the proposals they came from), or None
                for prototype masks.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    mask_coefs: Optional[np.ndarray] = None
    mask_boxes: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> "Candidates":
        """Select by integer array, slice or boolean mask; returns new `Candidates`."""
        coefs = None if self.mask_coefs is None else self.mask_coefs[index]
        mask_boxes = None if self.mask_boxes is None else self.mask_boxes[index]
        return Candidates(self.xyxy[index], self.scores[index], self.class_ids[index], coefs, mask_boxes)

    @classmethod
    def concatenate(cls, parts: Sequence["Candidates"]) -> "Candidates":
        """Join candidate sets in order (all with or all without mask coefficients)."""
        coefs = None if parts[0].mask_coefs is None else np.concatenate([p.mask_coefs for p in parts])
        mask_boxes = None if parts[0].mask_boxes is None else np.concatenate([p.mask_boxes for p in parts])
        return cls(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.class_ids for p in parts]), coefs, mask_boxes)

    def above(self, min_score: Optional[float]) -> "Candidates":
        """The candidates scoring > min_score (all of them for None)."""
        return self if min_score is None else self[np.flatnonzero(self.scores > np.float32(min_score))]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic function 1 / (1 + exp(-x)); saturates to 0/1 without warnings."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def softmax(logits: np.ndarray) -> np.ndarray:
    """float32 (N, K) logits -> (N, K) probabilities along the last axis (shifted by the row maximum: no overflow)."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32, copy=False)


def best_class(class_scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(N, C) scores -> (best score float32 (N,), class id int32 (N,)); C = 0 gives a single class 0."""
    if class_scores.shape[1] == 0:
        n = len(class_scores)
        return np.ones(n, np.float32), np.zeros(n, np.int32)
    return class_scores.max(axis=1), class_scores.argmax(axis=1).astype(np.int32)


def dequantize_array(array: np.ndarray, quant: Optional[QuantParams], name: str = "") -> np.ndarray:
    """Integer values -> float32 scale * (q - zero_point); float16/float32 -> float32 (float32 is not copied).

    name: the output's name, for the error when an integer output has no quantization parameters.
    """
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        if quant is None:
            raise EdgedetError(f"output {name!r} is {array.dtype} but the model spec has no quantization "
                               f"parameters for it")
        return dequantize(array, quant)
    return array.astype(np.float32, copy=False)


def dequantize_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Dict[str, np.ndarray]:
    """Every output -> float32, integer ones with spec.output_quant[name]: real = scale * (q - zero_point)."""
    return {name: dequantize_array(array, spec.output_quant.get(name), name) for name, array in outputs.items()}


def dequantized_sigmoid(array: np.ndarray, quant: Optional[QuantParams], name: str = "") -> np.ndarray:
    """`sigmoid(dequantize_array(array, quant, name))` as float32 of the array's shape. For 8-bit integer outputs
    it is one look-up in a table of the 256 values (`sigmoid_table`): the same numbers, without a float pass."""
    array = np.asarray(array)
    if array.dtype.char in "bB" and quant is not None and quant.dtype == array.dtype.name:  # int8, uint8
        return sigmoid_table(float(quant.scale), int(quant.zero_point), quant.dtype)[array.view(np.uint8)]
    return sigmoid(dequantize_array(array, quant, name))


@lru_cache(maxsize=256)
def sigmoid_table(scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """float32 (256,) sigmoid(scale * (q - zero_point)) of every value q of 8-bit `dtype` ("int8" / "uint8"),
    indexed by the value's byte (q viewed as uint8); read-only. Computed by `dequantize` and `sigmoid`, so a
    look-up gives the numbers of the float pass."""
    values = np.arange(256, dtype=np.uint8).view(np.dtype(dtype))
    table = sigmoid(dequantize(values, QuantParams(scale, zero_point, dtype)))
    table.setflags(write=False)
    return table


def dequantized_output(outputs: Mapping[str, np.ndarray], spec: ModelSpec, name: str) -> np.ndarray:
    """One output by name as float32 (see `dequantize_array`)."""
    return dequantize_array(outputs[name], spec.output_quant.get(name), name)
