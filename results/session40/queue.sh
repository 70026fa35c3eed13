#!/bin/bash
# queue.sh: session 40 (Xeon): KolektorSDD 768x320 (session 26's command) with AdamW (lr 0.001), coordinates kept,
# then session 29's scoring (line 160, TTA flip-vflip) by trainer recalibrate; one results line per model.
source /work/runs/lib.sh; B=/work/runs/bin40; O=/work/runs/s40
line() { N=$1; R=$2; python3 -c "import json,re; m=json.load(open('$R/inspect/summary.json'))['metrics']; t=re.search(r'Elapsed \(wall clock\) time.*: (\S+)', open('$O/$N.train.log').read()); print('$(basename $R)', m['labelled_images'], m['defective_images'], ' '.join('%s=%.4f'%(k,m[k]) for k in ('image_auroc','pixel_auroc','aupro')), 'train_wall', t.group(1) if t else '?')" | tee -a $O/results.txt; }
run() { N=$1; D=$2; TF=$3; R=$O/$N; mkdir -p $R
  [ -f $R/checkpoint.safetensors ] || /usr/bin/time -v $B/trainer train --data $D --config small $TF --out $R > $R.train.log 2>&1 || { echo "train failed $N" >> $O/results.txt; return; }
  $B/trainer export --checkpoint $R/checkpoint.safetensors --out $R/model.onnx > $R.export.log 2>&1 || { echo "export failed $N" >> $O/results.txt; return; }
  $B/runtime inspect --model $R/model.onnx --out $R/inspect --overlays none $D/test > $R.inspect.log 2>&1
  line $N $R
  L=$R-line160; mkdir -p $L
  $B/trainer recalibrate --checkpoint $R/checkpoint.safetensors --score-line 160 --out $L > $L.recal.log 2>&1 || { echo "recal failed $N line" >> $O/results.txt; return; }
  $B/trainer export --checkpoint $L/checkpoint.safetensors --out $L/model.onnx > $L.export.log 2>&1 || { echo "export failed $N line" >> $O/results.txt; return; }
  $B/runtime inspect --model $L/model.onnx --out $L/inspect --overlays none $D/test > $L.inspect.log 2>&1
  line $N $L
  T=$R-line160-tta; mkdir -p $T
  $B/trainer recalibrate --checkpoint $R/checkpoint.safetensors --score-line 160 --tta flip-vflip --out $T > $T.recal.log 2>&1 || { echo "recal failed $N" >> $O/results.txt; return; }
  $B/trainer export --checkpoint $T/checkpoint.safetensors --out $T/model.onnx > $T.export.log 2>&1 || { echo "export failed $N tta" >> $O/results.txt; return; }
  $B/runtime inspect --model $T/model.onnx --out $T/inspect --overlays none $D/test > $T.inspect.log 2>&1
  line $N $T
}
[ "${1:-}" = lib ] && return 0
K="--steps 800 --size 768x320 --batch-size 2 --masks axis --strokes 0.5 --stroke-shade 1 --head-out-prior 0.01"
for S in 7 1 2; do run ksdd768-adamw-s$S $KSDD "$K --optimizer adamw --lr 0.001 --seed $S"; done
echo queue done >> $O/results.txt
