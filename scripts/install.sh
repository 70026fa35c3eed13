#!/usr/bin/env bash
# Installs what the build and the tests need, once (idempotent: a second run only checks): Debian
# packages (a C++ compiler for torch-sys' wrapper, libclang for the v4l bindings, python3-venv),
# the pinned torch wheel (tch's libtorch) and onnxruntime (the parity reference) into `.venv/`.
# `scripts/demo.sh`, `scripts/test.sh` and `scripts/cross.sh` call it; `scripts/env.sh` then
# only sets the environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="2.11.0"   # tch 0.24 pins libtorch 2.11.0 (DESIGN.md §8)
ORT_VERSION="1.32.0"
VENV="$ROOT/.venv"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: a C++ compiler for torch-sys' wrapper, venv support for Python, libclang for
# the bindgen run of the v4l crate (camera capture, DESIGN.md §8), headless Chromium for the web
# view's browser test, the Mosquitto broker for its MQTT test.
need_pkgs=()
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)
dpkg -s libclang-dev >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
# The web view's test loads the page in a real browser (runtime/tests/web_browser.rs).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# ... and its MQTT test talks to a real broker (runtime/tests/mqtt_events.rs).
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need_pkgs+=(mosquitto)
# ... and openssl makes the certificates of its TLS test.
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || { echo "could not install ${need_pkgs[*]}" >&2; exit 1; }
fi

command -v cargo >/dev/null 2>&1 || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }

# The installed version from the package metadata (`import torch` would map ~2 GB of CUDA
# libraries just to read it).
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('torch').startswith('$TORCH_VERSION') else 1)" >/dev/null 2>&1; then
  say "installing torch==$TORCH_VERSION into $VENV (about 4.7 GB with its CUDA libraries, a few minutes, once)"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip >/dev/null && "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"; } \
    || { echo "could not install torch==$TORCH_VERSION into $VENV" >&2; exit 1; }
fi

# ONNX Runtime: a reference for parity tests only (the product runs tract).
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('onnxruntime') == '$ORT_VERSION' else 1)" >/dev/null 2>&1; then
  say "installing onnxruntime==$ORT_VERSION into $VENV (reference for the parity tests)"
  "$VENV/bin/pip" install -q "onnxruntime==$ORT_VERSION" || { echo "could not install onnxruntime==$ORT_VERSION" >&2; exit 1; }
fi

