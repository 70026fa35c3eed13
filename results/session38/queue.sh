#!/bin/bash
# queue.sh: session 38 runs on the Xeon, one after the other.
# run NAME DATA "TRAIN FLAGS" "RECAL FLAGS": train, then for floor 0 and 0.1: recalibrate -> export f32 -> runtime inspect
source /work/runs/lib.sh; B=/work/runs/bin38; O=/work/runs/s38
run() { N=$1; D=$2; TF=$3; RF=$4; R=$O/$N; mkdir -p $R
  [ -f $R/checkpoint.safetensors ] || /usr/bin/time -v $B/trainer train --data $D --config small $TF --out $R > $R.train.log 2>&1 || { echo "train failed $N"; return; }
  for q in 0 0.1; do V=$R/floor$q
    $B/trainer recalibrate --checkpoint $R/checkpoint.safetensors --map-floor $q $RF --out $V > $V.recal.log 2>&1 || { echo "recal failed $V"; continue; }
    $B/trainer export --checkpoint $V/checkpoint.safetensors --out $V/model.onnx > $V.export.log 2>&1 || { echo "export failed $V"; continue; }
    $B/runtime inspect --model $V/model.onnx --out $V/inspect --overlays none $D/test > $V.inspect.log 2>&1
    python3 -c "import json,re; m=json.load(open('$V/inspect/summary.json'))['metrics']; t=re.search(r'Elapsed \(wall clock\) time.*: (\S+)', open('$R.train.log').read()); print('$N', 'floor=$q', m['labelled_images'], m['defective_images'], ' '.join('%s=%.4f'%(k,m[k]) for k in ('image_auroc','pixel_auroc','aupro')), 'train_wall', t.group(1) if t else '?')" | tee -a $O/results.txt
  done; }
( cd /work/main && /usr/bin/time -v scripts/demo.sh data/bsdata/ball_screw $O/demo-s7 ) > $O/demo.sh.log 2>&1; ln -sf $O/demo.sh.log $O/demo-s7.train.log
for S in 7 1 2; do run demo-s$S $DEMO "--steps 800 --seed $S" ""; done
for S in 7 1 2; do run demo-adamw-s$S $DEMO "--steps 800 --seed $S --optimizer adamw --lr 0.001 --coord-channels none" ""; done
run bottle3000-s3 $BOTTLE "--steps 3000 --augment flip,vflip,rot90 --seed 3" "--tta flip-vflip"
for S in 7 1 2; do run bottle1200-s$S $BOTTLE "--steps 1200 --seed $S" ""; done
run bottle3000-s4 $BOTTLE "--steps 3000 --augment flip,vflip,rot90 --seed 4" "--tta flip-vflip"
echo queue done >> $O/results.txt
