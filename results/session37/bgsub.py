#!/usr/bin/env python3
"""bgsub.py MODEL.onnx DATA [--exclude-prefix KGT]: pixel AUROC / AUPRO (0.3) of the model's anomaly map
and of per-image background-removed maps (map minus its q-quantile; map minus a wide Gaussian of itself).
Maps and masks at the model's resolution. Caches the maps next to the model."""
import sys, glob, os, numpy as np, onnxruntime as ort
from PIL import Image
from scipy import ndimage
M, D = sys.argv[1], sys.argv[2]
cache = M + '.' + D.strip('/').replace('/', '_') + '.npz'
if os.path.exists(cache):
    z = np.load(cache, allow_pickle=True); maps, gts, names = list(z['maps']), list(z['gts']), list(z['names'])
else:
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    s = ort.InferenceSession(M, so); inp = s.get_inputs()[0]; H, W = inp.shape[2], inp.shape[3]
    maps, gts, names = [], [], []
    for f in sorted(glob.glob(D + '/test/*/*')):
        cls = f.split('/')[-2]; b = os.path.basename(f).rsplit('.', 1)[0]
        im = Image.open(f).convert('RGB').resize((W, H), Image.BILINEAR)
        x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1)[None] / 255.
        m = [a for a in s.run(None, {inp.name: x}) if a.ndim == 4][0][0, 0]
        gt = np.zeros_like(m, bool) if cls == 'good' else np.array(Image.open(f'{D}/ground_truth/{cls}/{b}_mask.png').convert('L').resize((W, H), Image.NEAREST)) > 0
        maps.append(m); gts.append(gt); names.append(b)
    np.savez(cache, maps=np.array(maps), gts=np.array(gts), names=np.array(names))

def auroc(neg, pos):
    from scipy.stats import rankdata
    ranks = rankdata(np.concatenate([neg, pos]))
    return (ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos))

def aupro(ms, gs, limit=0.3, steps=400):
    neg = np.concatenate([m[~g] for m, g in zip(ms, gs)])
    regions = []
    for m, g in zip(ms, gs):
        lab, n = ndimage.label(g)
        for k in range(1, n + 1): regions.append(m[lab == k])
    ths = np.quantile(neg, 1 - np.linspace(0, limit, steps))  # thresholds giving FPR 0..limit
    fpr = np.array([(neg > t).mean() for t in ths]); pro = np.array([np.mean([(r > t).mean() for r in regions]) for t in ths])
    return np.trapezoid(pro, fpr) / limit

def keep(n):
    ex = [a.split('=', 1)[1] for a in sys.argv[3:] if a.startswith('--exclude-prefix=')]
    return not any(n.startswith(e) for e in ex)
idx = [i for i, n in enumerate(names) if keep(str(n))]
maps = [maps[i] for i in idx]; gts = [gts[i] for i in idx]
variants = {'raw': lambda m: m}
for q in [float(a.split('=')[1]) for a in sys.argv[3:] if a.startswith('--q=')] or (0.1, 0.25, 0.5, 0.75):
    variants[f'minus q{int(q * 100)}'] = (lambda q: lambda m: m - np.quantile(m, q))(q)
    variants[f'minus q{int(q * 100)} clamp'] = (lambda q: lambda m: np.maximum(m - np.quantile(m, q), 0))(q)
for s in ([] if any(a.startswith('--q=') for a in sys.argv[3:]) else (4, 8, 16)):
    variants[f'minus gauss{s}'] = (lambda s: lambda m: m - ndimage.gaussian_filter(m, s, mode='reflect'))(s)
print(f'{M} {D} images {len(maps)} defective {sum(g.any() for g in gts)}')
for k, f in variants.items():
    ms = [f(m.astype(np.float64)) for m in maps]
    neg = np.concatenate([m[~g] for m, g in zip(ms, gts)]); pos = np.concatenate([m[g] for m, g in zip(ms, gts)])
    sc = np.array([m.max() for m in ms]); lab = np.array([g.any() for g in gts])
    print(f'{k:14s} pixel AUROC {auroc(neg, pos):.4f}  AUPRO {aupro(ms, gts):.4f}  (image AUROC of the map max {auroc(sc[~lab], sc[lab]):.4f})', flush=True)
