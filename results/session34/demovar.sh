#!/bin/bash
# demovar.sh SEED NAME DATA: the demo's training (`small`, 800 steps) on DATA, export f32, `runtime inspect` on the
# embedded demo's test set with and without its 5 KGT* pitting images (a folder of links). From the repository root
# after `source scripts/env.sh`; writes to $OUT (default out/session34).
set -euo pipefail
S=$1; N=$2; DATA=$3; DEMO=data/bsdata/ball_screw
OUT=${OUT:-out/session34}; B=${B:-target/debug}; R=$OUT/$N-s$S; V=$OUT/demo-nokgt
mkdir -p $OUT
if [ ! -d $V ]; then
  mkdir -p $V/test/good $V/test/pitting $V/ground_truth/pitting
  for f in $DEMO/test/good/*; do ln -s $(realpath $f) $V/test/good/; done
  for f in $DEMO/test/pitting/*; do b=$(basename $f); case $b in KGT*) continue;; esac
    ln -s $(realpath $f) $V/test/pitting/; ln -s $(realpath $DEMO/ground_truth/pitting/${b%.*}_mask.png) $V/ground_truth/pitting/; done
fi
[ -f $R/checkpoint.safetensors ] || $B/trainer train --data $DATA --config small --steps 800 --seed $S --out $R > $R.train.log 2>&1
$B/trainer export --checkpoint $R/checkpoint.safetensors --out $R/model.onnx > $R.log 2>&1
for T in all:$DEMO/test nokgt:$V/test; do
  n=${T%%:*}; $B/runtime inspect --model $R/model.onnx --out $R/inspect-$n --overlays none ${T#*:} >> $R.log 2>&1
  python3 -c "import json; m=json.load(open('$R/inspect-$n/summary.json'))['metrics']; print('$N s$S $n', m['labelled_images'], m['defective_images'], {k: round(m[k], 4) for k in ('image_auroc', 'pixel_auroc', 'aupro')})"
done
