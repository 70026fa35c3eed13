#!/bin/bash
# queue5.sh: after queue4, bottle's target command with AdamW, seed 4.
while ! grep -q 'queue4 done' /work/runs/s38/results.txt 2>/dev/null; do sleep 15; done
source <(sed -n '/^source/,/^  done; }/p' /work/runs/s38/queue.sh)
run bottle3000-adamw-s4 $BOTTLE "--steps 3000 --augment flip,vflip,rot90 --seed 4 --optimizer adamw --lr 0.001 --coord-channels none" "--tta flip-vflip"
echo queue5 done >> $O/results.txt
