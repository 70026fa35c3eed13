#!/bin/bash
# queue6.sh: bottle, the small default (1200 steps, coordinates in the head), seeds 7 1 2; floor 0 and 0.1.
source <(sed -n '/^source/,/^  done; }/p' /work/runs/s38/queue.sh)
for S in 7 1 2; do run bottle1200-s$S $BOTTLE "--steps 1200 --seed $S" ""; done
echo queue6 done >> $O/results.txt
