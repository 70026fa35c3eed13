#!/usr/bin/env python3
"""downscale.py SRC DST [EVERY] [link]: SRC/train/good images downscaled to a longer side of 256 px (bicubic, JPEG quality 92), as the embedded demo's SOURCE.md says, or with `link` linked unchanged; every EVERY-th image (sorted) when given."""
import sys, os, glob
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]; every = int(sys.argv[3]) if len(sys.argv) > 3 else 1
mode = sys.argv[4] if len(sys.argv) > 4 else 'down'
os.makedirs(dst + '/train/good', exist_ok=True)
for i, f in enumerate(sorted(glob.glob(src + '/train/good/*'))):
    if i % every: continue
    out = dst + '/train/good/' + os.path.basename(f)
    if mode == 'link': os.symlink(f, out); continue
    im = Image.open(f); w, h = im.size; s = 256 / max(w, h)
    if s < 1: im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    im.save(out, quality=92)
