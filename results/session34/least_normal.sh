#!/bin/bash
# least_normal.sh MODEL.onnx DATA N LIST: the N training images MODEL finds least normal, by `runtime inspect --list N`
# on DATA/train (in sample), their file names written to LIST. Run from the repository root.
set -euo pipefail
M=$1; DATA=$2; N=$3; LIST=$4; RT=${RT:-target/debug/runtime}
$RT inspect --model $M --out $LIST.inspect --overlays none --list $N $DATA/train > $LIST.inspect.log
python3 -c "import json, os, sys; s = json.load(open('$LIST.inspect/summary.json')); open('$LIST', 'w').write(''.join(os.path.basename(i['image']) + '\n' for i in s['extremes']['least_normal_good']))"
wc -l < $LIST
