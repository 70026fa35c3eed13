#!/bin/bash
# bins_other.sh: AUROC per defect area on bottle and BSData full (session 38's default models, floor 0.1), this session's runtime
source /work/runs/lib.sh; R=/work/main/target/debug/runtime; O=/work/runs/s39/bins; mkdir -p $O
for x in "bottle1200-s7 $BOTTLE" "bottle1200-s1 $BOTTLE" "bottle1200-s2 $BOTTLE" "bsfull-s7 $BSFULL" "bsfull-s1 $BSFULL" "bsfull-s2 $BSFULL" "bottle3000-s3 $BOTTLE"; do
  set -- $x; n=s38_$1; $R inspect --model /work/runs/s38/$1/floor0.1/model.onnx --out $O/$n --overlays none $2/test > $O/$n.log 2>&1
  python3 -c "import json; m=json.load(open('$O/$n/summary.json'))['metrics']; print('$1', '%.4f'%m['image_auroc'], ' | '.join('%s-%s: %d img, %d rej, %.3f'%(b['min_px'], b['max_px'], b['images'], b['rejected'], b['auroc_against_good']) for b in m['by_defect_area']))"
done
