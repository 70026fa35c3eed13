#!/bin/bash
# queue3.sh: after bottle3000-s3, stop queue.sh (its bottle 1200-step runs give way) and run BSData full:
# AdamW (lr 0.001, no coordinates) seeds 7 1 2, then the default seeds 7 1 2; floor 0 and 0.1 each.
while ! grep -q 'bottle3000-s3 floor=0.1' /work/runs/s38/results.txt 2>/dev/null; do sleep 15; done
pkill -f queue.sh; sleep 1; pkill -f 'bin38/trainer train'; sleep 2; rm -rf /work/runs/s38/bottle1200-s7
source <(sed -n '/^source/,/^  done; }/p' /work/runs/s38/queue.sh)
for S in 7 1 2; do run bsfull-adamw-s$S $BSFULL "--steps 800 --seed $S --optimizer adamw --lr 0.001 --coord-channels none" ""; done
for S in 7 1 2; do run bsfull-s$S $BSFULL "--steps 800 --seed $S" ""; done
echo queue3 done >> $O/results.txt
