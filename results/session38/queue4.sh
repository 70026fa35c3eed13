#!/bin/bash
# queue4.sh: after queue3, bottle's target command with AdamW (lr 0.001, no coordinates), seed 3, TTA flip-vflip; floor 0 and 0.1.
while ! grep -q 'queue3 done' /work/runs/s38/results.txt 2>/dev/null; do sleep 15; done
source <(sed -n '/^source/,/^  done; }/p' /work/runs/s38/queue.sh)
run bottle3000-adamw-s3 $BOTTLE "--steps 3000 --augment flip,vflip,rot90 --seed 3 --optimizer adamw --lr 0.001 --coord-channels none" "--tta flip-vflip"
echo queue4 done >> $O/results.txt
