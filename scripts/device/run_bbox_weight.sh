#!/usr/bin/env bash
# Device run 3: two SSG adapter runs side by side with the bbox frames up-weighted (bbox_weight 5 and 20).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p runs/ssg
COMMON="lr=1e-3 warmup_steps=50 max_steps=100000 max_minutes=2.4 ckpt_every_minutes=0.7 num_threads=4"
python3 .gpu/train_gpu.py out_dir=runs/ssg/gpu_bw5 bbox_weight=5.0 $COMMON > runs/gpu_bw5.out 2>&1 &
p1=$!
python3 .gpu/train_gpu.py out_dir=runs/ssg/gpu_bw20 bbox_weight=20.0 $COMMON > runs/gpu_bw20.out 2>&1 &
p2=$!
save() { for v in bw5 bw20; do [ -d runs/ssg/gpu_$v/ssg ] && tar -cf $OUT/gpu_$v.tar -C runs/ssg/gpu_$v ssg train.log 2>/dev/null; done; }
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null; do sleep 15; save; done
save; tail -3 runs/ssg/gpu_bw5/train.log runs/ssg/gpu_bw20/train.log; tail -c 1500 runs/gpu_bw5.out
