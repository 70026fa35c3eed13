M=/work/main
KSDD=/work/shared/data/kolektorsdd/kolektorsdd
BOTTLE=/work/shared/data/mvtec_ad/bottle
DEMO=/work/main/data/bsdata/ball_screw
BSFULL=/work/shared/data/bsdata/ball_screw
B=${B:-/work/runs/bin32}
source $M/scripts/env.sh >/dev/null 2>&1
