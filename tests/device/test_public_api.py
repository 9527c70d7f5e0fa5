"""Every public callable of `edgedet.device`, called twice through the package attribute in one fresh process.

A public function that shares its name with a submodule stops working once that submodule is imported
(the import binds the module on the package); the probe imports every submodule first, then calls.
"""
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent('''
    import importlib, pkgutil, sys
    import numpy as np
    import edgedet.device as d

    for info in pkgutil.walk_packages(d.__path__, d.__name__ + "."):
        importlib.import_module(info.name)

    model = sys.argv[1]
    image = (np.arange(120 * 150 * 3) % 251).astype(np.uint8).reshape(120, 150, 3)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)

    def run_model():
        backend = d.load_backend(model, threads=1)
        x, letterbox = d.preprocess(image, backend.spec)
        return backend, backend.run(x), letterbox

    def postprocess():
        backend, outputs, letterbox = run_model()
        return d.postprocess(outputs, backend.spec, letterbox, conf=0.01)

    def postprocess_semantic():
        backend, outputs, letterbox = run_model()
        return d.postprocess_semantic(outputs, backend.spec, letterbox)

    calls = {
        "Detections": lambda: d.Detections(boxes, scores, np.zeros(3, dtype=np.int32))[scores > 0.75],
        "EdgedetError": lambda: d.EdgedetError("probe"),
        "ModelSpec": lambda: d.ModelSpec(names=["a"], input_size_hw=(32, 32)),
        "QuantParams": lambda: d.QuantParams(scale=0.1, zero_point=0, dtype="int8"),
        "box_iou": lambda: d.box_iou(boxes, boxes),
        "cxcywh_to_xyxy": lambda: d.cxcywh_to_xyxy(boxes),
        "xyxy_to_cxcywh": lambda: d.xyxy_to_cxcywh(boxes),
        "xyxy_to_xywh": lambda: d.xyxy_to_xywh(boxes),
        "xywh_to_xyxy": lambda: d.xywh_to_xyxy(boxes),
        "Letterbox": lambda: d.Letterbox.fit((120, 150), (160, 160)),
        "preprocess": lambda: d.preprocess(image, d.load_backend(model, threads=1).spec),
        "nms": lambda: d.nms(boxes, scores, 0.5),
        "postprocess": postprocess,
        "postprocess_semantic": postprocess_semantic,
        "rle_encode": lambda: d.rle_encode(np.eye(8, dtype=bool)),
        "load_backend": lambda: d.load_backend(model, threads=1),
        "StageTimer": lambda: d.StageTimer(),
        "Detector": lambda: d.Detector(model, threads=1).predict(image),
        "Tracker": lambda: d.Tracker().update(d.Detections(boxes, scores, np.zeros(3, dtype=np.int32))),
        "TrackerConfig": lambda: d.TrackerConfig(),
        "Zone": lambda: d.Zone.parse("hall:0,0,100,0,100,100"),
        "Line": lambda: d.Line.parse("door:0,50,150,50"),
        "ZoneCounter": lambda: d.ZoneCounter([d.Zone.parse("hall:0,0,1,0,1,1")], size_wh=(150, 120)).update(
            d.Tracker(d.TrackerConfig(min_hits=1)).update(d.Detections(boxes, scores, np.zeros(3, dtype=np.int32))),
            0, 0.0),
    }
    public = [name for name in d.__all__ if callable(getattr(d, name))]
    missing = sorted(set(public) - set(calls))
    assert not missing, f"public callables without a probe call: {missing}"
    for name in public:
        for attempt in (1, 2):
            try:
                calls[name]()
            except Exception as error:
                raise SystemExit(f"edgedet.device.{name}, call {attempt}: {type(error).__name__}: {error}")
    print("called", len(public))
''')


def test_every_public_callable_works_twice_in_one_process(exported_models):
    result = subprocess.run([sys.executable, "-c", PROBE, str(exported_models["onnx"])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["called", "23"]
