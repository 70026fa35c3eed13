#!/bin/bash
# bottle.sh SEEDS...: bottle, the small default (1200 steps), exported f32, one after the other.
source /work/runs/lib.sh; B=/work/runs/bin36
for S in "$@"; do R=/work/runs/s37/bottle-s$S
[ -f $R/checkpoint.safetensors ] || /usr/bin/time -v $B/trainer train --data $BOTTLE --config small --steps 1200 --seed $S --out $R > $R.train.log 2>&1
$B/trainer export --checkpoint $R/checkpoint.safetensors --out $R/model.onnx > $R.export.log 2>&1
$B/runtime inspect --model $R/model.onnx --out $R/inspect --overlays none $BOTTLE/test > $R.inspect.log 2>&1
done
