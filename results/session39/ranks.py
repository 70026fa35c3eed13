import json,sys,os
for d in sys.argv[1:]:
    ev=[json.loads(l) for l in open(d+'/events.jsonl')]
    g=sorted([(e['score'],os.path.basename(e['source'])) for e in ev if '/good/' in e['source']],reverse=True)
    b=sorted([(e['score'],os.path.basename(e['source'])) for e in ev if '/good/' not in e['source']])
    print(d); print(' top good:', ' '.join('%.3f:%s'%(s,n[:22]) for s,n in g[:4]))
    print(' low bad :', ' '.join('%.3f:%s'%(s,n[:22]) for s,n in b[:5]))
    # pairs lost per image
    lost={}
    for sg,ng in g:
        for sb,nb in b:
            if sb<sg: lost[ng]=lost.get(ng,0)+1; lost[nb]=lost.get(nb,0)+1
    print(' pairs lost (of %d):'%(len(g)*len(b)), sum(1 for sg,_ in g for sb,_ in b if sb<sg), sorted(lost.items(),key=lambda x:-x[1])[:8])
