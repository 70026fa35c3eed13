#!/bin/bash
# queue2.sh: after queue.sh's BSData full runs, stop queue.sh (its 1600-step demo runs are dropped) and
# probe whether more input pixels let the map see the demo's two 4-6 px pits.
source /work/runs/s39/queue.sh lib
until grep -q '^bsfull1200-s2 ' $O/results.txt; do sleep 10; done
kill -9 22234; sleep 1; pkill -9 -f 'trainer train.*demo1600'; sleep 2; rm -rf $O/demo1600-s7 $O/demo1600-s7.train.log
echo "queue.sh stopped before demo1600" >> $O/results.txt
run demo96x256-s7 $DEMO "--steps 800 --size 96x256 --seed 7"
run demo128x320-s7 $DEMO "--steps 800 --size 128x320 --seed 7"
echo queue2 done >> $O/results.txt
