#!/usr/bin/env python3
"""late.py RANK.txt... : for BSData rankings (score, file name per line, highest first), how many of
each fold's top 15 / 29 / 50 and of the merged per-fold tops are from the wear run's last days
(2020-09-05 on; the capture date is in the name, 01_YYMMDD...)."""
import sys
late = lambda n: n.startswith('01_') and n[3:9] >= '200905'
folds = [[l.split()[1] for l in open(f)] for f in sys.argv[1:]]
for f, names in zip(sys.argv[1:], folds):
    print(f, len(names), 'images,', sum(map(late, names)), 'late;', ', '.join(f'top {k}: {sum(map(late, names[:k]))}' for k in (15, 29, 50)))
k = len(folds)
for n in (30, 57, 99):
    top = [x for i, names in enumerate(folds) for x in names[:round(n * (i + 1) / k) - round(n * i / k)]]
    print(f'merged top {n}: {sum(map(late, top))} from 2020-09-05 on ({100 * sum(map(late, top)) / n:.0f} %)')
