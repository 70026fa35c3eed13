#!/usr/bin/env python3
"""rank.py RUN_DIR DATA OUT.txt: in-sample image scores of DATA/train/good by RUN_DIR/model.onnx (ONNX Runtime),
highest first, one line each: score, file name, `held` for the checkpoint's held-out images (scored out of sample)."""
import sys, glob, os, json
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'session33'))
from onnx_model import Model
run, data, out = sys.argv[1:4]
model = Model(run + '/model.onnx')
hold = set(json.load(open(run + '/checkpoint.json'))['holdout'])
rows = sorted(((model.run(f)[1], os.path.basename(f), f in hold) for f in sorted(glob.glob(data + '/train/good/*'))), reverse=True)
with open(out, 'w') as o:
    for s, n, h in rows:
        o.write(f"{s:.5f} {n} {'held' if h else 'train'}\n")
late = lambda n: n[3:9] >= '200905'  # BSData: capture date in the name; the wear run's last days
for k in (30, 57, 99, 150):
    print(f"top {k}: {sum(late(n) for _, n, _ in rows[:k])} from 2020-09-05 on, {sum(h for *_, h in rows[:k])} held out")
print(f"all {len(rows)}: {sum(late(n) for _, n, _ in rows)} from 2020-09-05 on")
