#!/usr/bin/env python3
"""trainscores.py MODEL.onnx DATA: image scores of the training images themselves (in-sample), by capture day."""
import sys, glob, os, collections, numpy as np, onnxruntime as ort
from PIL import Image
s = ort.InferenceSession(sys.argv[1]); inp = s.get_inputs()[0]; H, W = inp.shape[2], inp.shape[3]
by = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[2] + '/train/good/*')):
    x = np.asarray(Image.open(f).convert('RGB').resize((W, H), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1)[None] / 255.
    r = s.run(None, {inp.name: x}); sc = float([a for a in r if a.size == 1][0].ravel()[0])
    by['late' if os.path.basename(f)[3:9] >= '200905' else 'early'].append(sc)
for k, v in by.items(): v = np.array(v); print(k, len(v), 'median %.3f  90th %.3f  max %.3f' % (np.median(v), np.quantile(v, 0.9), v.max()))
