#!/bin/bash
# kfold.sh DATA K SEED N OUT: an out-of-sample ranking of DATA/train/good (MVTec layout).
# The training images are split into K folds at random (python's random.Random(SEED)); for each
# fold a model trains on the other K-1 folds (`trainer train --config small --steps 800 --seed
# SEED`, exported f32) and `runtime inspect --list` scores the fold it never saw. Each fold's
# images are ranked by their own model; the top N/K of each fold (N in all) are written to
# OUT/drop.txt, every fold's ranking to OUT/foldI.rank.txt (score, file name). Run from the
# repository root after `source scripts/env.sh`; B (default target/debug) holds the binaries.
set -euo pipefail
DATA=$(realpath $1); K=$2; S=$3; N=$4; OUT=$5; B=${B:-target/debug}
HERE=$(dirname $(realpath ${BASH_SOURCE[0]}))
mkdir -p $OUT
python3 - $DATA $K $S $OUT <<'PY'
import os, random, sys
data, k, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
names = sorted(os.listdir(data + '/train/good'))
random.Random(seed).shuffle(names)
for i in range(k):
    open(f'{out}/fold{i}.txt', 'w').write(''.join(n + '\n' for n in sorted(names[i::k])))
PY
: > $OUT/drop.txt
for ((i = 0; i < K; i++)); do
  R=$OUT/fold$i
  # the model of fold i trains on every image outside it
  [ -d $R.train ] || $HERE/../session34/linkset.sh $DATA $OUT/fold$i.txt $R.train
  [ -f $R.model/checkpoint.safetensors ] || $B/trainer train --data $R.train --config small --steps 800 --seed $S --out $R.model > $R.train.log 2>&1
  [ -f $R.model/model.onnx ] || $B/trainer export --checkpoint $R.model/checkpoint.safetensors --out $R.model/model.onnx > $R.export.log 2>&1
  # the fold's own images, as a train/ folder of links, scored by the model that never saw them
  mkdir -p $R.score/train/good
  while read f; do ln -sf $DATA/train/good/$f $R.score/train/good/; done < $OUT/fold$i.txt
  n=$(wc -l < $OUT/fold$i.txt)
  $B/runtime inspect --model $R.model/model.onnx --out $R.inspect --overlays none --list $n $R.score/train > $R.inspect.log 2>&1
  python3 -c "
import json, os
s = json.load(open('$R.inspect/summary.json'))['extremes']['least_normal_good']
open('$R.rank.txt', 'w').write(''.join(f\"{i['score']:.5f} {os.path.basename(i['image'])}\n\" for i in s))
top = [os.path.basename(i['image']) for i in s][:round($N * ($i + 1) / $K) - round($N * $i / $K)]
open('$OUT/drop.txt', 'a').write(''.join(n + '\n' for n in top))"
done
wc -l < $OUT/drop.txt
