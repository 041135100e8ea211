#!/usr/bin/env bash
# Device run 2: bench wm on the GPU (more repeats), then two SSG adapter runs side by side on the one GPU
# (prompt contrast on / off, the shipped recipe otherwise), then the GPU-portable freeze test.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p runs/ssg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/gpu.txt
timeout 100 python3 .gpu/bench_gpu.py $OUT/bench_gpu.json cuda 15 > $OUT/bench.log 2>&1; echo "bench rc $?"; grep -A3 "threads ┃\|SSG (\|peak" $OUT/bench.log
COMMON="lr=1e-3 warmup_steps=50 max_steps=100000 max_minutes=5.2 ckpt_every_minutes=2 num_threads=4"
timeout 380 python3 .gpu/train_gpu.py out_dir=runs/ssg/gpu_contrast prompt_contrast=1.0 contrast_margin=1e-3 $COMMON > runs/gpu_contrast.out 2>&1 &
p1=$!
timeout 380 python3 .gpu/train_gpu.py out_dir=runs/ssg/gpu_plain prompt_contrast=0.0 $COMMON > runs/gpu_plain.out 2>&1 &
p2=$!
sleep 45; tail -2 runs/ssg/gpu_contrast/train.log runs/ssg/gpu_plain/train.log; tail -3 runs/gpu_contrast.out
wait $p1; echo "contrast rc $?"; wait $p2; echo "plain rc $?"
for v in contrast plain; do tail -4 runs/ssg/gpu_$v/train.log; tar -cf $OUT/gpu_$v.tar -C runs/ssg/gpu_$v ssg train.log; done
tail -c 3000 runs/gpu_contrast.out > $OUT/gpu_contrast_tail.txt
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_ssg_pipeline.py -k freezes 2>&1 | tail -2
