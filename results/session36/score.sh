#!/bin/bash
# score.sh RUN DATA GRIDARGS...: synthetic test set from the held-out images, then the same smoothing grid on it and on the real test set.
source /work/runs/lib.sh
R=$1; D=$2; shift 2
C=$R/checkpoint.safetensors
[ -d $R/synth ] || $B/trainer synthetic-test --checkpoint $C --out $R/synth --per-image 4 --seed 0 > $R/synth.log 2>&1
$B/trainer smoothing --checkpoint $C --data $R/synth "$@" > $R/smooth-synth.md 2>$R/smooth-synth.err
$B/trainer smoothing --checkpoint $C --data $D "$@" > $R/smooth-real.md 2>$R/smooth-real.err
