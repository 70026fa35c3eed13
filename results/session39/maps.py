import onnxruntime as ort, numpy as np, json, glob, os, sys
from PIL import Image
model=sys.argv[1]; D='/work/main/data/bsdata/ball_screw'
s=ort.InferenceSession(model); meta=s.get_modelmeta().custom_metadata_map
mean=np.array(json.loads(meta['ffcad.norm_mean']),np.float32); std=np.array(json.loads(meta['ffcad.norm_std']),np.float32)
H,W=int(meta['ffcad.input_height']),int(meta['ffcad.input_width'])
def run(f):
    im=np.asarray(Image.open(f).convert('RGB').resize((W,H),Image.BILINEAR),np.float32)/255
    x=im.transpose(2,0,1)[None].copy()
    m,sc=s.run(None,{'image':x}); return m[0,0],float(sc[0])
for n in sys.argv[2:]:
    f=glob.glob(D+'/test/*/'+n+'*')[0]; m,sc=run(f)
    g=glob.glob(D+'/ground_truth/*/'+n+'*')
    y,x=np.unravel_index(m.argmax(),m.shape)
    out='%s score %.3f map max %.3f at (%d,%d) p99 %.3f'%(n[:26],sc,m.max(),y,x,np.percentile(m,99))
    if g:
        k=np.asarray(Image.open(g[0]).convert('L').resize((W,H),Image.NEAREST))>127
        ys,xs=np.nonzero(k); out+=' | mask %d px, box y%d-%d x%d-%d, map in mask max %.3f mean %.3f, outside mean %.3f'%(k.sum(),ys.min(),ys.max(),xs.min(),xs.max(),m[k].max(),m[k].mean(),m[~k].mean())
    print(out)
    Image.fromarray((np.clip(m/max(m.max(),0.5),0,1)*255).astype(np.uint8)).resize((W*2,H*2)).save('/work/runs/s39/map_'+n[:26]+'.png')
