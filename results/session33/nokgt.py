#!/usr/bin/env python3
"""nokgt.py MODEL.onnx DATA: pixel AUROC (all pixels pooled; masks nearest to the map) with and without the KGT* defective images."""
import sys, glob, os, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_model import Model
M, D = sys.argv[1], sys.argv[2]
model = Model(M)
run = model.map
def auroc(pos, neg):
    ns = np.sort(neg); lo = np.searchsorted(ns, pos, 'left'); hi = np.searchsorted(ns, pos, 'right')
    return ((lo + hi) / 2).mean() / len(ns)
neg_good = [run(f).ravel() for f in sorted(glob.glob(D + '/test/good/*'))]
rows = []
for f in sorted(glob.glob(D + '/test/*/*')):
    cls = f.split('/')[-2]
    if cls == 'good': continue
    b = os.path.basename(f).rsplit('.', 1)[0]
    gt = model.mask(f'{D}/ground_truth/{cls}/{b}_mask.png')
    m = run(f); rows.append((b.startswith('KGT'), m[gt], m[~gt], m.max()))
for name, keep in (('all', lambda k: True), ('without KGT', lambda k: not k), ('KGT only', lambda k: k)):
    sel = [r for r in rows if keep(r[0])]
    pos = np.concatenate([r[1] for r in sel]); neg = np.concatenate(neg_good + [r[2] for r in sel])
    print(f'{name:12s} defective images {len(sel):4d}  pixel AUROC {auroc(pos, neg):.4f}')
