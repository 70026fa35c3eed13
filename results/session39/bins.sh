#!/bin/bash
# bins.sh: the defect-area table of `runtime inspect` (this session's runtime) for each demo model
R=/work/main/target/debug/runtime; O=/work/runs/s39/bins; mkdir -p $O
for m in s38/demo-s7/floor0.1 s38/demo-s1/floor0.1 s38/demo-s2/floor0.1 s39/demo1200-s7 s39/demo1200-s1 s39/demo1200-s2 s38/demo-adamw-s7/floor0.1 s38/demo-adamw-s1/floor0.1 s38/demo-adamw-s2/floor0.1 s39/demo96x256-s7 s39/demo128x320-s7; do
  n=$(echo $m | tr / _); $R inspect --model /work/runs/$m/model.onnx --out $O/$n --overlays none /work/main/data/bsdata/ball_screw/test > $O/$n.log 2>&1
  python3 -c "import json; m=json.load(open('$O/$n/summary.json'))['metrics']; print('$m', '%.4f'%m['image_auroc'], ' | '.join('%s-%s: %d img, %d rej, %.3f'%(b['min_px'], b['max_px'], b['images'], b['rejected'], b['auroc_against_good']) for b in m['by_defect_area']))"
done
