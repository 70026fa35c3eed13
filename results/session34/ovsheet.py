# ovsheet.py INSPECT_DIR N OUT.jpg: the overlays of the N highest-scoring images of a runtime inspect run, 2 per row, with score and file name.
import sys, json, glob, os
from PIL import Image, ImageDraw
d, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ev = [json.loads(l) for l in open(d + '/events.jsonl')]
ev = sorted([e for e in ev if e.get('score') is not None], key=lambda e: -e['score'])[:n]
tiles = []
for e in ev:
    im = Image.open(e['overlay']).convert('RGB'); im = im.resize((im.width * 3 // 4, im.height * 3 // 4))
    t = Image.new('RGB', (im.width, im.height + 16), 'white'); t.paste(im, (0, 16))
    ImageDraw.Draw(t).text((3, 2), '%.3f  %s' % (e['score'], os.path.basename(e['source'])), fill='black'); tiles.append(t)
W, H = max(t.width for t in tiles), max(t.height for t in tiles); cols = 2
s = Image.new('RGB', (W * cols, H * ((len(tiles) + cols - 1) // cols)), 'white')
for i, t in enumerate(tiles): s.paste(t, ((i % cols) * W, (i // cols) * H))
s.save(out, quality=80); print(s.size, os.path.getsize(out))
