#!/usr/bin/env bash
# Fills `.dev/` (ignored through .git/info/exclude) with what gpu.sh needs on the device machine:
# the trainer and runtime of this checkout's dev build, stripped and xz-compressed (~15 MB: the
# device tool carries at most 64 MiB with the tracked tree), a data set, and gpu.sh itself.
# Usage: results/paper-gpu-h200/pack.sh [DATA]   (default ../shared/data/mvtec_ad/bottle)
# Then, through the device tool: run(command="bash .dev/gpu.sh", carry=[".dev"], timeout_s=595).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA="${1:-$ROOT/../shared/data/mvtec_ad/bottle}"
cd "$ROOT"
EXCLUDE="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.dev/' "$EXCLUDE" 2>/dev/null || echo '/.dev/' >> "$EXCLUDE"
rm -rf .dev && mkdir -p .dev
for b in trainer runtime; do
  [ -x "target/debug/$b" ] || { echo "target/debug/$b missing: run scripts/test.sh or cargo build --bins first" >&2; exit 1; }
  strip -o ".dev/$b" "target/debug/$b"
  xz -T2 --x86 --lzma2=preset=9e -c ".dev/$b" > ".dev/$b.xz"
  rm ".dev/$b"
done
cp -r "$DATA" .dev/bottle
chmod -R u+w .dev
cp "$(dirname "${BASH_SOURCE[0]}")/gpu.sh" .dev/gpu.sh
tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$(( ${tracked:-0} + $(du -sb .dev | cut -f1) ))
echo "packed .dev: $(du -sh .dev | cut -f1); with the tracked tree $((total / 1048576)) MiB of the tool's 64 MiB"
