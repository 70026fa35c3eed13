#!/usr/bin/env python3
"""trainscores.py MODEL.onnx DATA: image scores of the training images themselves (in-sample), by capture day."""
import sys, glob, os, collections, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_model import Model
model = Model(sys.argv[1])
by = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[2] + '/train/good/*')):
    sc = model.run(f)[1]
    by['late' if os.path.basename(f)[3:9] >= '200905' else 'early'].append(sc)
for k, v in by.items(): v = np.array(v); print(k, len(v), 'median %.3f  90th %.3f  max %.3f' % (np.median(v), np.quantile(v, 0.9), v.max()))
