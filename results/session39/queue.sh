#!/bin/bash
# queue.sh: session 39 runs on the Xeon, one after the other, the default map floor (0.1).
# run NAME DATA "TRAIN FLAGS": train -> export f32 -> runtime inspect; one results line
source /work/runs/lib.sh; B=/work/runs/bin39; O=/work/runs/s39
run() { N=$1; D=$2; TF=$3; R=$O/$N; mkdir -p $R
  [ -f $R/checkpoint.safetensors ] || /usr/bin/time -v $B/trainer train --data $D --config small $TF --out $R > $R.train.log 2>&1 || { echo "train failed $N" >> $O/results.txt; return; }
  $B/trainer export --checkpoint $R/checkpoint.safetensors --out $R/model.onnx > $R.export.log 2>&1 || { echo "export failed $N" >> $O/results.txt; return; }
  $B/runtime inspect --model $R/model.onnx --out $R/inspect --overlays none $D/test > $R.inspect.log 2>&1
  python3 -c "import json,re; m=json.load(open('$R/inspect/summary.json'))['metrics']; t=re.search(r'Elapsed \(wall clock\) time.*: (\S+)', open('$R.train.log').read()); print('$N', m['labelled_images'], m['defective_images'], ' '.join('%s=%.4f'%(k,m[k]) for k in ('image_auroc','pixel_auroc','aupro')), 'train_wall', t.group(1) if t else '?')" | tee -a $O/results.txt
}
[ "${1:-}" = lib ] && return 0
for S in 7 1 2; do run demo1200-s$S $DEMO "--steps 1200 --seed $S"; done
for S in 7 1 2; do run bsfull1200-s$S $BSFULL "--steps 1200 --seed $S"; done
for S in 7 1 2; do run demo1600-s$S $DEMO "--steps 1600 --seed $S"; done
echo queue done >> $O/results.txt
