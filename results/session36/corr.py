import sys
sys.argv=[sys.argv[0]]+sys.argv[1:]
exec(open('pick.py').read().split("run = sys.argv[1]")[0])
def rank(v):
    o=sorted(range(len(v)),key=lambda i:v[i]); r=[0]*len(v)
    for i,j in enumerate(o): r[j]=i
    return r
def spearman(a,b):
    ra,rb=rank(a),rank(b); n=len(a); ma=sum(ra)/n; mb=sum(rb)/n
    cov=sum((x-ma)*(y-mb) for x,y in zip(ra,rb)); va=sum((x-ma)**2 for x in ra); vb=sum((y-mb)**2 for y in rb)
    return cov/(va*vb)**0.5
for run in sys.argv[1:]:
    syn, real = rows(f'{run}/smooth-synth.md'), rows(f'{run}/smooth-real.md')
    ks=list(syn)
    for i,name in enumerate(['image AUROC','pixel AUROC','AUPRO']):
        print(run, name, 'spearman synth vs real over', len(ks), 'rows: %.2f' % spearman([syn[k][i] for k in ks],[real[k][i] for k in ks]))
