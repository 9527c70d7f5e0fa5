# edgedet: `make demo` runs the whole pipeline, `make test` the test suite (what CI runs).
SHELL := /bin/bash
PY := .venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup test

# .venv with the project editable and every extra; torch pinned to the local CPU build by constraints.txt.
setup: .venv/.installed
.venv/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q -c constraints.txt -e ".[all]"
	# TFLite from a foreign ONNX file: onnx2torch, without its torchvision requirement (which would replace torch)
	.venv/bin/pip install -q --no-deps onnx2torch==1.5.15
	touch $@

test: setup
	$(PY) -m pytest -q tests

# ---- wheel (issue 15): dist/edgedet-<version>-py3-none-any.whl, the file the README's Raspberry Pi section installs.
# build/ is removed first so no file of an earlier build slips into the wheel.
# Needs only pip (the build front end fetches setuptools): .venv's python when there is one, else python3.
.PHONY: wheel
wheel:
	rm -rf build
	$(if $(wildcard $(PY)),$(PY),python3) -m pip wheel -q --no-deps -w dist .
	@ls -1 dist/edgedet-*.whl

# ---- demo (H7): the whole pipeline on a fresh clone, shipped checkpoint -> ONNX/TFLite fp32+int8 -> run -> bench -> report.
DEMO := runs/demo
DEMO_FRAMES := 300
DEMO_VAL := 100
DEMO_THREADS := 2
DEMO_CKPT := shipped
.PHONY: demo
demo: setup
	@start=$$(date +%s); set -euo pipefail; \
	rm -rf $(DEMO) && mkdir -p $(DEMO); \
	echo "== 1/5 synthetic data set (val split of $(DEMO_VAL) images)"; \
	.venv/bin/edgedet data synth --out $(DEMO)/data --train 64 --val $(DEMO_VAL) --imgsz 320 --seed 0; \
	echo "== 2/5 ($$(( $$(date +%s) - start )) s) export the shipped checkpoint to ONNX and TFLite, fp32 and int8"; \
	.venv/bin/edgedet export $(DEMO_CKPT) --format onnx,onnx-int8,tflite,tflite-int8 --calib $(DEMO)/data --val-limit 50 --out $(DEMO)/models; \
	int8=$$(ls $(DEMO)/models/*.tflite | grep -i int8 | head -n 1); \
	echo "== 3/5 ($$(( $$(date +%s) - start )) s) edgedet run: $$int8 on a synthetic 30 fps camera, $(DEMO_FRAMES) frames"; \
	.venv/bin/edgedet run --model "$$int8" --source synthetic:30 --max-frames $(DEMO_FRAMES) --threads $(DEMO_THREADS) \
	  --save $(DEMO)/run.mp4 --json $(DEMO)/run.jsonl; \
	echo "== 4/5 ($$(( $$(date +%s) - start )) s) edgedet bench over the exported variants on the val split"; \
	.venv/bin/edgedet bench --models $(DEMO)/models/*.onnx $(DEMO)/models/*.tflite --data $(DEMO)/data \
	  --threads $(DEMO_THREADS) --out $(DEMO)/bench; \
	echo "== 5/5 ($$(( $$(date +%s) - start )) s) edgedet report"; \
	.venv/bin/edgedet report $(DEMO)/bench --out $(DEMO)/report; \
	echo; echo "annotated video: $(DEMO)/run.mp4 (detections as JSON lines: $(DEMO)/run.jsonl)"; \
	echo "report: $(DEMO)/report/report.html and $(DEMO)/report/report.md"; \
	echo "demo took $$(( $$(date +%s) - start )) s"

# ---- pi-check (H8): the device install and int8 results on Debian bookworm arm64 under QEMU (Pi 4 cortex-a72,
# Pi 5 cortex-a76) against this x86 host. Needs root; caches the arm64 root in .cache/pi-root. Not part of `make test`.
.PHONY: pi-check
pi-check: setup
	scripts/pi_check.sh

# ---- train-shipped (H3): retrain a shipped checkpoint from scratch, then evaluate it afresh on the synthetic val
# split. Two DDP processes (gloo) of one thread each; per-epoch validation in runs/shipped-<model>320/metrics.jsonl,
# log on stderr. --time-limit ends the cosine schedule on time. Every family is trained the same way: the same
# data, processes, threads and 27-minute budget.
#   train-shipped       edgedet/weights/edgedet-n-320.pt, the shipped YOLO model (8 epochs)
#   train-shipped-ssd   edgedet/weights/edgedet-ssd-n-320.pt, the shipped SSD (issue 16; 10 epochs)
#   train-shipped-rcnn  edgedet/weights/edgedet-rcnn-n-320.pt, the shipped two-stage model, Faster R-CNN with a
#                       Mask R-CNN head (issue 16; 10 epochs)
# $(call train_shipped,MODEL,EPOCHS,WEIGHTS): MODEL is the --model preset, WEIGHTS the shipped file's stem
define train_shipped
	.venv/bin/edgedet data synth --out runs/shapes320 --train 4000 --val 300 --imgsz 320 --seed 0
	OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node 2 -m edgedet train --data runs/shapes320 \
	  --model $(1) --imgsz 320 --epochs $(2) --batch 16 --lr 3e-3 --threads 1 --workers 1 --time-limit 27 \
	  --out runs/shipped-$(1)320
	cp runs/shipped-$(1)320/best.pt edgedet/weights/$(3).pt
	.venv/bin/edgedet eval --model edgedet/weights/$(3).pt --data runs/shapes320
endef
.PHONY: train-shipped train-shipped-ssd train-shipped-rcnn
train-shipped: setup
	$(call train_shipped,n,8,edgedet-n-320)
train-shipped-ssd: setup
	$(call train_shipped,ssd-n,10,edgedet-ssd-n-320)
train-shipped-rcnn: setup
	$(call train_shipped,rcnn-n,10,edgedet-rcnn-n-320)

# ---- bench-families (issue 16): the shipped YOLO model, SSD and two-stage model, each exported to ONNX and TFLite in fp32
# and int8 (calibrated on the training images), measured by one `edgedet bench` on the 300-image val split (one
# inference thread) and put in one report (runs/families/report/report.md, pareto.png, stages.png).
FAM := runs/families
.PHONY: bench-families
bench-families: setup
	.venv/bin/edgedet data synth --out runs/shapes320 --train 4000 --val 300 --imgsz 320 --seed 0
	rm -rf $(FAM) && mkdir -p $(FAM)
	for model in shipped shipped:ssd shipped:rcnn; do \
	  .venv/bin/edgedet export $$model --format onnx,onnx-int8,tflite,tflite-int8 --calib runs/shapes320 \
	    --calib-size 200 --val-limit 100 --out $(FAM)/models || exit 1; \
	done
	.venv/bin/edgedet bench --models $(FAM)/models/*.onnx $(FAM)/models/*.tflite --data runs/shapes320 --threads 1 \
	  --out $(FAM)/bench
	.venv/bin/edgedet report $(FAM)/bench --out $(FAM)/report
	cat $(FAM)/report/report.md

# ---- finetune-demo (issue 18): a synthetic variant with other classes (triangle, star, hexagon; 1000 train, 200 val),
# trained for 3 epochs (186 steps) from the shipped model and from scratch; box AP50 after every epoch in
# runs/finetune/{tuned,scratch}/metrics.jsonl, printed side by side.
FT := runs/finetune
.PHONY: finetune-demo
finetune-demo: setup
	.venv/bin/edgedet data synth --out $(FT)/data --train 1000 --val 200 --imgsz 320 --seed 5 --things triangle,star,hexagon
	rm -rf $(FT)/tuned $(FT)/scratch
	.venv/bin/edgedet train --data $(FT)/data --weights shipped --epochs 3 --batch 16 --out $(FT)/tuned
	.venv/bin/edgedet train --data $(FT)/data --epochs 3 --batch 16 --out $(FT)/scratch
	@for run in tuned scratch; do printf '%-8s' $$run; $(PY) -c 'import json,sys; print("  ".join("step %d: AP50 %.3f AP %.3f" % (m["step"], m["box/AP50"], m["box/AP"]) for m in map(json.loads, open(sys.argv[1]))))' $(FT)/$$run/metrics.jsonl; done

# ---- gpu-check (issue 18): on a machine with a CUDA GPU, the first training steps' losses on CUDA (fp32) against the
# CPU from the same weights and batches, and training images/s with AMP, fp32 and on the CPU. Exit 2 without a GPU.
.PHONY: gpu-check
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

# ---- bench-yolov8n (issue 18): edgedet-n against Ultralytics YOLOv8n, each trained from scratch for the shipped model's
# 27 minutes on this machine, on runs/shapes320; fp32 / int8 ONNX box mAP, parameters, FLOPs, latency -> runs/vs-yolov8n.
.PHONY: bench-yolov8n
bench-yolov8n: setup
	$(PY) benchmarks/bench_vs_yolov8n.py --minutes 27 --out runs/vs-yolov8n

# ---- bench-int8 (H5): fp32 vs int8 on onnxruntime and TFLite, shipped model at 320: median latency (1 and 2 threads,
# 50 runs after warm-up), file sizes, and mAP/mask AP/mIoU deltas against the PyTorch checkpoint on the synthetic val split.
.PHONY: bench-int8
bench-int8: setup
	test -f runs/shapes320/dataset.yaml || .venv/bin/edgedet data synth --out runs/shapes320 --train 4000 --val 300 --imgsz 320 --seed 0
	$(PY) benchmarks/bench_int8.py --data runs/shapes320 --imgsz 320 --out runs/bench-int8

# ---- ultralytics-models (issue 13): YOLOv8n and YOLOv8n-seg trained by Ultralytics on the synthetic data, as ONNX,
# for benchmarks/bench_foreign_int8.py. Ultralytics runs in a venv of its own; edgedet never imports it.
# From scratch (model yaml, no downloaded weights), 320 px, batch 16, 4 epochs each of 250 steps (1.4 s a step for
# detect on this 2-core machine when idle). The synthetic set is converted to YOLO
# labels once (runs/shapes320-yolo, by `edgedet data convert`); outputs runs/ultralytics/yolov8n-{det,seg}.onnx.
ULTRA_PY := PYTHONPATH=scripts/ultralytics_shim YOLO_OFFLINE=1 YOLO_CONFIG_DIR=$(CURDIR)/.cache/ultralytics-config .cache/ultralytics-venv/bin/python
ULTRA_EPOCHS := 4
.PHONY: ultralytics-models
ultralytics-models: setup
	scripts/ultralytics_env.sh
	test -f runs/shapes320/dataset.yaml || .venv/bin/edgedet data synth --out runs/shapes320 --train 4000 --val 300 --imgsz 320 --seed 0
	$(ULTRA_PY) scripts/ultralytics_models.py train --data runs/shapes320/dataset.yaml --task detect --imgsz 320 \
	  --epochs $(ULTRA_EPOCHS) --batch 16 --out runs/ultralytics
	$(ULTRA_PY) scripts/ultralytics_models.py train --data runs/shapes320/dataset.yaml --task segment --imgsz 320 \
	  --epochs $(ULTRA_EPOCHS) --batch 16 --out runs/ultralytics
