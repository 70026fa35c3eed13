# Pairs lost per model, those lost by the two small pits, and image AUROC without those two images.
import json,sys,os
P=('01_200902053521_585000_090_crop_2','01_200905201556_462500_045_crop_2')
for d in sys.argv[1:]:
    ev=[json.loads(l) for l in open(d+'/events.jsonl')]
    g=[e['score'] for e in ev if '/good/' in e['source']]
    b=[(e['score'],os.path.basename(e['source'])) for e in ev if '/good/' not in e['source']]
    lost=lambda bs: sum((sb<sg)+0.5*(sb==sg) for sg in g for sb,_ in bs)
    allp=lost(b); pits=lost([x for x in b if x[1].startswith(P)]); rest=[x for x in b if not x[1].startswith(P)]
    print('%-40s lost %5.1f of %d, pits %5.1f, AUROC %.4f, without the pits %.4f'%(d.replace('/inspect',''),allp,len(g)*len(b),pits,1-allp/(len(g)*len(b)),1-lost(rest)/(len(g)*len(rest))))
