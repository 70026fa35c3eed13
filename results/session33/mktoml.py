#!/usr/bin/env python3
"""mktoml.py CHECKPOINT_JSON OUT.toml key=value... : the checkpoint's resolved config as TOML with overrides (model.head_max_width=64)."""
import json, sys
d = json.load(open(sys.argv[1]))['config']
for kv in sys.argv[3:]:
    k, v = kv.split('=', 1)
    path = k.split('.')
    t = d
    for p in path[:-1]:
        t = t[p]
    t[path[-1]] = json.loads(v)
def val(v):
    if isinstance(v, bool): return 'true' if v else 'false'
    if isinstance(v, str): return json.dumps(v)
    if isinstance(v, list): return '[' + ', '.join(val(x) for x in v) + ']'
    return repr(v)
out = []
tables = []
for k, v in d.items():
    if v is None: continue
    if isinstance(v, dict): tables.append((k, v))
    else: out.append(f'{k} = {val(v)}')
for k, t in tables:
    out.append(f'\n[{k}]')
    out += [f'{kk} = {val(vv)}' for kk, vv in t.items() if vv is not None]
open(sys.argv[2], 'w').write('\n'.join(out) + '\n')
