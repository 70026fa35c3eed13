#!/usr/bin/env python3
"""Where BSData full's image AUROC is lost, from `runtime inspect` events (RESULTS.md, session 20).

    python3 results/bsdata_scores.py INSPECT_DIR [INSPECT_DIR ...]   # needs numpy and pillow

Per run: image AUROC over all 394 pitting images and per mask area (px at the images' 384x156),
and the images with a colour cast (mean G - R > -5 grey levels; the training images sit at
-15.5 .. -12.8): their scores, and image AUROC without the good ones among them.
"""
import json, os, sys
import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'bsdata', 'ball_screw')
BINS = [(0, 50), (50, 200), (200, 600), (600, None)]


def auroc(pos, neg):
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return (pos > neg).mean() + 0.5 * (pos == neg).mean()


def mask_area(src):
    stem = os.path.splitext(os.path.basename(src))[0]
    return int((np.asarray(Image.open(os.path.join(ROOT, 'ground_truth', 'pitting', stem + '_mask.png'))) > 0).sum())


def green_minus_red(src):
    a = np.asarray(Image.open(src).convert('RGB'), dtype=float)
    return a[..., 1].mean() - a[..., 0].mean()


for run in sys.argv[1:]:
    events = [json.loads(line) for line in open(os.path.join(run, 'events.jsonl'))]
    good = [e for e in events if '/good/' in e['source']]
    pits = [e for e in events if '/pitting/' in e['source']]
    gs = np.array([e['score'] for e in good])
    areas = np.array([mask_area(e['source']) for e in pits])
    ps = np.array([e['score'] for e in pits])
    cells = []
    for lo, hi in BINS:
        sel = (areas >= lo) & (areas < (hi or 10**9))
        cells.append(f"{lo}-{hi or 'inf'} px: {auroc(ps[sel], gs):.3f} (n={sel.sum()})")
    cast_g = np.array([green_minus_red(e['source']) > -5 for e in good])
    cast_p = np.array([green_minus_red(e['source']) > -5 for e in pits])
    print(f"{run}\n  image AUROC {auroc(ps, gs):.4f}; by mask area: " + '; '.join(cells))
    print(f"  colour cast: {cast_g.sum()} good (scores {', '.join(f'{s:.3f}' for s in gs[cast_g])}), "
          f"{cast_p.sum()} pitting (median {np.median(ps[cast_p]):.3f}, others {np.median(ps[~cast_p]):.3f}); "
          f"image AUROC without the cast good images {auroc(ps, gs[~cast_g]):.4f}")
