#!/bin/bash
# wait for the 96x256 probe's result, then build the tests (beside the 128x320 probe, whose time is then not a claim)
until grep -q '^demo96x256-s7 ' /work/runs/s39/results.txt; do sleep 10; done
echo "build started beside demo128x320-s7 $(date)" >> /work/runs/s39/results.txt
cd /work/main && source scripts/env.sh >/dev/null 2>&1 && cargo test --workspace --features runtime/onnxruntime --no-run > /work/runs/s39/build.log 2>&1; echo "build rc=$? $(date)" >> /work/runs/s39/results.txt
