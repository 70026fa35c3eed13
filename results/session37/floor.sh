#!/bin/bash
# floor.sh NAME CHECKPOINT DATA [Q]: the checkpoint with the map's floor removed (trainer recalibrate --map-floor Q, default 0.1),
# exported f32, runtime inspect on DATA/test; the metrics of the checkpoint as it was (its own export, inspected the same way) beside.
source /work/runs/lib.sh; T=/work/main/target/debug/trainer; RT=${RT:-/work/main/target/debug/runtime}
N=$1; C=$2; D=$3; Q=${4:-0.1}; R=/work/runs/s37/$N
mkdir -p $R
for v in floor0:0 floor:$Q; do n=${v%%:*}; q=${v#*:}
  $T recalibrate --checkpoint $C --map-floor $q --out $R/$n > $R/$n.recal.log 2>&1 || { echo "recalibrate failed $R"; exit 1; }
  $T export --checkpoint $R/$n/checkpoint.safetensors --out $R/$n/model.onnx > $R/$n.export.log 2>&1 || { echo "export failed $R"; exit 1; }
  $RT inspect --model $R/$n/model.onnx --out $R/$n/inspect --overlays none $D/test > $R/$n.inspect.log 2>&1
  python3 -c "import json; m=json.load(open('$R/$n/inspect/summary.json'))['metrics']; print('$N', '$n q=$q', m['labelled_images'], m['defective_images'], {k:round(m[k],4) for k in ('image_auroc','pixel_auroc','aupro')})" | tee -a /work/runs/s37/results.txt
done
