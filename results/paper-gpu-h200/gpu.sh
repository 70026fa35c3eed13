#!/usr/bin/env bash
# Issue 13 item 3: the `paper` preset on a lent GPU (the device tool). One call, time-boxed:
# bench 40 steps -> size the training to the time left -> train -> eval on CUDA -> export f32
# (tch CPU eval + tract parity) -> runtime inspect (tract) on the exported model.
# Usage there: bash .dev/gpu.sh   (OUT set by the tool). Here, for a dry run:
#   TL=.venv/lib/python3.11/site-packages/torch/lib OUT=/tmp/o DRY=1 bash .dev/gpu.sh
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
# Seconds left before LIMIT minus a reserve, at least 1 (timeout 0 would mean no limit at all).
left() { local s=$(( LIMIT - $(el) - $1 )); [ "$s" -ge 1 ] && echo "$s" || echo 1; }
LIMIT=${LIMIT:-560}            # the whole script must end by then (timeout_s of the call: 590)
TRAIN_END=${TRAIN_END:-330}    # main training must end by then (s after start)
D=.dev/bottle
W=/tmp/ffc
mkdir -p "$W/bin" "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
echo "== start $(date -u +%FT%TZ)"
xz -dc .dev/trainer.xz > "$W/bin/trainer" && xz -dc .dev/runtime.xz > "$W/bin/runtime" && chmod +x "$W/bin/"* || exit 1
TL=${TL:-$(python3 -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("torch").origin), "lib"))')}
TL=$(cd "$TL" && pwd)
export LD_LIBRARY_PATH="$TL"
# The binary links libtorch_cpu only; loading libtorch_cuda registers the CUDA backend. The runs
# of 2026-12-04 preloaded it (PRELOAD=1); the trainer now loads it itself (trainer/src/cuda.rs):
# without PRELOAD this script checks that (the train log must say device=Cuda(0)).
[ "${PRELOAD:-0}" = 1 ] && export LD_PRELOAD="$TL/libtorch_cuda.so"
echo "== torch lib $TL"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
nproc; free -g | head -2
# GPU use while we run: one sample every ~6 s (5 s sleep + nvidia-smi's own time).
( while true; do nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,noheader 2>/dev/null; sleep 5; done ) > "$OUT/gpu.csv" &
SAMPLER=$!

T="$W/bin/trainer"
COMMON=(--seed ${SEED:-7} --data "$D" --config paper --augment flip,vflip,rot90 --save-every 0)
if [ -z "${FIXED_STEPS:-}" ]; then
echo "== bench: 40 steps  (t=$(el) s)"
rm -rf "$W/bench"
timeout 150 "$T" train "${COMMON[@]}" --steps ${BENCH_STEPS:-40} --out "$W/bench" 2>&1 | grep -v "^\s*$" | tail -20
BW=$(python3 -c "import json;d=json.load(open('$W/bench/checkpoint.json'));print(d['wall_time_s']/d['steps_done'])" 2>/dev/null || echo "")
[ -n "$BW" ] || { echo "bench failed"; kill $SAMPLER; exit 1; }
LEFT=$(( TRAIN_END - $(el) ))
STEPS=$(python3 -c "print(max(40, min(20000, int($LEFT*0.92/$BW)//100*100)))")
[ -n "${DRY:-}" ] && STEPS=${DRY_STEPS:-4}
echo "== bench: $BW s/step incl. start-up; $LEFT s left for training -> --steps $STEPS  (t=$(el) s)"
else STEPS=$FIXED_STEPS; fi

echo "== train paper, --steps $STEPS, seed ${SEED:-7}  (t=$(el) s)"
rm -rf "$W/paper"
timeout "$(left 150)" "$T" train "${COMMON[@]}" --steps "$STEPS" --out "$W/paper" 2>&1 | tee "$OUT/train.log" | grep -v "^\s*$" | tail -25
grep -q 'device=Cuda(0)' "$OUT/train.log" && echo "== trained on CUDA" || echo "!! NOT trained on CUDA (see train.log)"
# At most 8 files come back: log.txt, gpu.csv, train.log, these two, the inspect summary, events, overlays.
cp "$W/paper/checkpoint.json" "$W/paper/validation.csv" "$OUT/" 2>/dev/null
ls -la "$W/paper" 2>&1 | head
echo "== eval on CUDA  (t=$(el) s)"
timeout 90 "$T" eval --checkpoint "$W/paper/checkpoint.safetensors" --data "$D" 2>&1 | tail -15
echo "== info  (t=$(el) s)"
"$T" info --config paper 2>&1 | tail -6
echo "== export f32 (tch CPU eval + tract parity)  (t=$(el) s)"
timeout "$(left 40)" "$T" export --checkpoint "$W/paper/checkpoint.safetensors" --out "$W/paper/model.onnx" --data "$D" 2>&1 | tail -12
echo "== runtime inspect (tract, 16 threads)  (t=$(el) s)"
timeout "$(left 10)" "$W/bin/runtime" inspect --model "$W/paper/model.onnx" --out "$W/inspect" --overlays all --threads "$(nproc)" "$D/test" 2>&1 | tail -15
cp "$W/inspect/summary.json" "$OUT/inspect_summary.json" 2>/dev/null
cp "$W/inspect/events.jsonl" "$OUT/events.jsonl" 2>/dev/null
# Overlays to look at: the first two images of each test class.
python3 - "$W/inspect" <<'PY' | tar czf "$OUT/overlays.tgz" -C "$W/inspect" -T - 2>/dev/null
import json, sys, collections
seen = collections.Counter()
for line in open(sys.argv[1] + "/events.jsonl"):
    e = json.loads(line); cls = e["source"].split("/")[-2]
    if e.get("overlay") and seen[cls] < 2:
        seen[cls] += 1; print(e["overlay"].split(sys.argv[1] + "/")[-1])
PY
kill $SAMPLER 2>/dev/null
echo "== done  (t=$(el) s)"
