#!/usr/bin/env bash
# The main job on the embedded default data (BSData ball_screw subset, CC BY-SA 4.0):
# train FFC-AD (small config, CPU) -> export ONNX -> inspect the test images with the runtime.
# Usage: scripts/demo.sh [DATA_ROOT] [OUT_DIR]     (trainer flags via TRAIN_ARGS="--steps 1200 --seed 8";
# unset, the demo trains 800 steps: 4.6-6.3 min on a 2-core Xeon, 9.5-12.9 min on a 2-core AMD EPYC (12.7-12.9 with
# session 36's faster trainer on a slow day, 15.0 without); the budget is 10 min)
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/install.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
DATA="${1:-data/bsdata/ball_screw}"
OUT="${2:-out/demo}"

say "building trainer and runtime (first build takes 15-25 min on 2 cores)"
cargo build -q --bins --features runtime/onnxruntime
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

start=$(date +%s)
say "1/3 training on $DATA/train/good"
"$BIN/trainer" train --data "$DATA" --config small --out "$OUT" ${TRAIN_ARGS---steps 800}
say "2/3 exporting $OUT/model.onnx (with tch metrics on $DATA/test)"
"$BIN/trainer" export --checkpoint "$OUT/checkpoint.safetensors" --out "$OUT/model.onnx" --data "$DATA"
say "3/3 inspecting $DATA/test with the runtime (tract)"
"$BIN/runtime" inspect --model "$OUT/model.onnx" --out "$OUT/inspect" "$DATA/test"
end=$(date +%s)
say "done in $((end - start)) s (train + export + inspect). Overlays: $OUT/inspect/overlays, events: $OUT/inspect/events.jsonl"
