#!/bin/bash
# confirm.sh RUN DATA TTA REDUCE SIGMA RULE(filter K | line L) NAME: recalibrate to a row, export f32, runtime inspect.
source /work/runs/lib.sh
R=$1; D=$2; T=$3; RED=$4; S=$5; RULE=$6; NAME=$7
if [ "${RULE%% *}" = filter ]; then SC="--score-line 0 --score-filter ${RULE#* }"; else SC="--score-line ${RULE#* }"; fi
O=$R/$NAME
$B/trainer recalibrate --checkpoint $R/checkpoint.safetensors --tta $T --tta-reduce $RED --map-sigma $S $SC --out $O > $O.log 2>&1
$B/trainer export --checkpoint $O/checkpoint.safetensors --out $O/model.onnx >> $O.log 2>&1
$B/runtime inspect --model $O/model.onnx --out $O/inspect --overlays none $D/test >> $O.log 2>&1
cat $O/inspect/summary.json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); m=d.get('metrics',d); print('$NAME', {k:m.get(k) for k in ('image_auroc','pixel_auroc','aupro')})" 2>/dev/null
