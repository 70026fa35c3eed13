# Sourced by the other scripts, or by you (`source scripts/env.sh`) before running the binaries:
# installs what the build needs (idempotent) and sets the environment for tch (libtorch from the
# pinned PyTorch wheel in a project-local venv). It changes no shell options and no directory.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="2.11.0"   # tch 0.24 pins libtorch 2.11.0 (DESIGN.md §8)
VENV="$ROOT/.venv"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: a C++ compiler for torch-sys' wrapper, venv support for Python, libclang for
# the bindgen run of the v4l crate (camera capture, DESIGN.md §8).
need_pkgs=()
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)
dpkg -s libclang-dev >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || { echo "could not install ${need_pkgs[*]}" >&2; return 1 2>/dev/null || exit 1; }
fi

command -v cargo >/dev/null 2>&1 || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; return 1 2>/dev/null || exit 1; }

# Version and library folder from the package metadata: `import torch` would map ~2 GB of CUDA
# libraries into every shell that sources this file.
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('torch').startswith('$TORCH_VERSION') else 1)" >/dev/null 2>&1; then
  say "installing torch==$TORCH_VERSION into $VENV (about 4.7 GB with its CUDA libraries, a few minutes, once)"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip >/dev/null && "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"; } \
    || { echo "could not install torch==$TORCH_VERSION into $VENV" >&2; return 1 2>/dev/null || exit 1; }
fi

# ONNX Runtime: a reference for parity tests only (the product runs tract).
ORT_VERSION="1.32.0"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('onnxruntime') == '$ORT_VERSION' else 1)" >/dev/null 2>&1; then
  say "installing onnxruntime==$ORT_VERSION into $VENV (reference for the parity tests)"
  "$VENV/bin/pip" install -q "onnxruntime==$ORT_VERSION" || { echo "could not install onnxruntime==$ORT_VERSION" >&2; return 1 2>/dev/null || exit 1; }
fi

TORCH_LIB="$("$VENV/bin/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("torch").origin), "lib"))' 2>/dev/null)"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
