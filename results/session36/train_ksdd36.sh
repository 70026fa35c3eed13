#!/bin/bash
# KolektorSDD, session 26's flags, 800 steps, one seed, session 36's trainer (heap kept), then session 32's synthetic protocol.
source /work/runs/lib.sh
B=/work/runs/bin36
S=$1; R=/work/runs/ksdd36-s$S
/usr/bin/time -v $B/trainer train --data $KSDD --config small --size 768x320 --batch-size 2 --masks axis --strokes 0.5 --stroke-shade 1 --head-out-prior 0.01 --steps 800 --seed $S --out $R > $R.train.log 2>&1 || exit 1
date > $R.score.start
B=$B ./score.sh $R $KSDD --tta none,flip-vflip --tta-reduce mean,min --sigmas 0,1,2 --score-filters 3 --score-lines 96,128,160,192
date > $R.score.end
