#!/usr/bin/env python3
"""fp.py MODEL.onnx DATA: which test images hold the normal pixels above the 99th percentile of all normal pixels, grouped by file-name source."""
import sys, glob, os, collections, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_model import Model
M, D = sys.argv[1], sys.argv[2]
model = Model(M)
run = model.map
rows = []
for f in sorted(glob.glob(D + '/test/*/*')):
    cls = f.split('/')[-2]; b = os.path.basename(f).rsplit('.', 1)[0]
    m = run(f)
    gt = np.zeros_like(m, bool) if cls == 'good' else model.mask(f'{D}/ground_truth/{cls}/{b}_mask.png')
    src = 'KGT' if b.startswith('KGT') else b[:7]
    rows.append((cls, src, b, m[~gt], m[gt]))
neg = np.concatenate([r[3] for r in rows]); t = np.quantile(neg, 0.99)
groups = collections.defaultdict(lambda: [0, 0, 0])
for cls, src, b, n, p in rows:
    g = groups[(cls, src)]; g[0] += 1; g[1] += (n > t).sum(); g[2] += n.size
print('99th pct of normal pixels', round(float(t), 3))
for k, (n, hot, tot) in sorted(groups.items()): print(f'{k[0]:8s} {k[1]:8s} images {n:4d}  normal px above: {hot:6d} ({hot / tot:.4f} of theirs, {hot / (neg > t).sum():.3f} of all)')
