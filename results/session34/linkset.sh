#!/bin/bash
# linkset.sh DATA LIST OUT: OUT is DATA (MVTec layout) with train/good minus the file names in LIST (one per line),
# as links; test/ and ground_truth/ linked. Nothing is copied.
set -euo pipefail
DATA=$(realpath $1); LIST=$2; OUT=$3
mkdir -p $OUT/train/good
for f in $DATA/train/good/*; do grep -qx "$(basename $f)" $LIST || ln -sf $(realpath $f) $OUT/train/good/; done
ln -sfn $DATA/test $OUT/test; ln -sfn $DATA/ground_truth $OUT/ground_truth
echo "$OUT: $(ls $OUT/train/good | wc -l) training images of $(ls $DATA/train/good | wc -l)"
