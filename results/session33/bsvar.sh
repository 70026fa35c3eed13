#!/bin/bash
# bsvar.sh SEED NAME [DATA]: train 800 steps on DATA (default BSData full), export f32, then `runtime inspect`
# on BSData full's test set with and without the KGT* pitting images (a folder of links to the rest).
# Run from the repository root after `source scripts/env.sh`; writes to $OUT (default out/session33).
set -euo pipefail
S=$1; N=$2; BSFULL=${BSFULL:-../shared/data/bsdata/ball_screw}; DATA=${3:-$BSFULL}
OUT=${OUT:-out/session33}; B=${B:-target/debug}; R=$OUT/$N-s$S; V=$OUT/bsfull-nokgt
mkdir -p $OUT
if [ ! -d $V ]; then  # the test set without KGT*: links, so nothing is copied
  mkdir -p $V/test/good $V/test/pitting $V/ground_truth/pitting
  for f in $BSFULL/test/good/*; do ln -s $(realpath $f) $V/test/good/; done
  for f in $BSFULL/test/pitting/*; do b=$(basename $f); case $b in KGT*) continue;; esac
    ln -s $(realpath $f) $V/test/pitting/; ln -s $(realpath $BSFULL/ground_truth/pitting/${b%.*}_mask.png) $V/ground_truth/pitting/; done
fi
[ -f $R/checkpoint.safetensors ] || $B/trainer train --data $DATA --config small --steps 800 --seed $S --out $R > $R.train.log 2>&1
$B/trainer export --checkpoint $R/checkpoint.safetensors --out $R/model.onnx > $R.log 2>&1
for T in all:$BSFULL/test nokgt:$V/test; do
  n=${T%%:*}; $B/runtime inspect --model $R/model.onnx --out $R/inspect-$n --overlays none ${T#*:} >> $R.log 2>&1
  python3 -c "import json; m=json.load(open('$R/inspect-$n/summary.json'))['metrics']; print('$N s$S $n', m['labelled_images'], m['defective_images'], {k: round(m[k], 4) for k in ('image_auroc', 'pixel_auroc', 'aupro')})"
done
