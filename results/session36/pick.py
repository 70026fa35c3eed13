#!/usr/bin/env python3
"""pick.py RUN [FIXED]: the smoothing row with the best synthetic image AUROC (ties: synthetic pixel
AUROC, then AUPRO), its real metrics, and the real metrics of FIXED ('tta|reduce|sigma|rule')."""
import sys, statistics
def rows(path):
    out = {}
    for line in open(path):
        c = [x.strip().replace('**', '').replace(' (checkpoint)', '') for x in line.strip().strip('|').split('|')]
        if len(c) != 9 or c[0] in ('TTA',) or c[0].startswith('---'):
            continue
        f = lambda v: float(v) if v not in ('n/a', '') else float('nan')
        out[(c[0], c[1], c[2], c[3])] = tuple(f(v) for v in (c[4], c[5], c[7]))
    return out
run = sys.argv[1]
syn, real = rows(f'{run}/smooth-synth.md'), rows(f'{run}/smooth-real.md')
best = max(syn, key=lambda k: syn[k])
top = sorted(syn, key=lambda k: syn[k], reverse=True)[:5]
print(f'{run}: chosen on synthetic {best} synth {syn[best]} -> real {real[best]}')
for k in top: print('   top synth', k, syn[k], 'real', real[k])
if len(sys.argv) > 2:
    fk = tuple(sys.argv[2].split('|'))
    print(f'   fixed {fk}: synth {syn.get(fk)} real {real.get(fk)}')
bi = max(real, key=lambda k: real[k][0]); print(f'   best real image row {bi} {real[bi]}')
