#!/usr/bin/env bash
# GPU check (issues 7, 12): on a CUDA machine, a few hundred iterations of the paper's R101-C4
# and VGG-16 Faster R-CNN configs at 600 px and R50-FPN at 800 px, on generated data, with the
# fast paths on (bf16 AMP in training and inference, channels_last, cudnn.benchmark, which
# benchmarks/train_speed.py sets on CUDA); prints training and inference images/s and peak
# memory per config, plus the card; then our R50-FPN Predictor against torchvision's on the
# GPU (fp32 NCHW, fp32 channels_last, bf16). Needs `make setup` first.
#   tools/gpu_check.sh [ITERS]        (default 300; the first 20 are warm-up, not timed)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-300}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-/tmp/resdet_gpu_check}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
[ -d "$DATA/VOC2007" ] || "$PY" -m tools.cli make-dataset --format voc --out "$DATA" \
    --num-images 400 --size 1000 --seed 0

COMMON=(device=cuda solver.amp=true solver.amp_dtype=bf16 test.precision=bf16 channels_last=true
        model.backbone.weights=
        model.num_classes=5 "data.class_names=[circle,square,triangle,star,ring]"
        data.train.root="$DATA/VOC2007" data.test.root="$DATA/VOC2007"
        data.train.splits=trainval data.test.splits=test data.num_workers=8
        solver.ims_per_batch=8)
PAPER=(input.min_size_train=600 input.max_size_train=1000
       input.min_size_test=600 input.max_size_test=1000)
for config in faster_rcnn_r101_c4_voc0712 faster_rcnn_vgg16_voc0712; do
  "$PY" benchmarks/train_speed.py --config "configs/detection/$config.yaml" \
      --iters "$ITERS" --warmup 20 --set "${COMMON[@]}" "${PAPER[@]}"
done
"$PY" benchmarks/train_speed.py --config configs/detection/faster_rcnn_r50_fpn_coco_1x.yaml \
    --iters "$ITERS" --warmup 20 --set "${COMMON[@]}" \
    data.train.format=voc data.test.format=voc data.test.ann_file= data.train.ann_file= \
    input.min_size_train=[800] input.max_size_train=1333 \
    input.min_size_test=800 input.max_size_test=1333
"$PY" benchmarks/detector_speed.py --device cuda --repeats 20
