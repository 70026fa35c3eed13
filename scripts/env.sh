# Sourced by the other scripts, or by you (`source scripts/env.sh`) before running cargo: sets the
# environment for tch (libtorch from the pinned PyTorch wheel in the project-local `.venv/` that
# `scripts/install.sh` fills). It installs nothing, changes no shell options and no directory.
# The built binaries do not need it: the trainer carries an rpath to that libtorch.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
command -v cargo >/dev/null 2>&1 || echo "env.sh: cargo not found: install the Rust toolchain (rustup) first" >&2

# The library folder from the package metadata: `import torch` would map ~2 GB of CUDA libraries
# into every shell that sources this file.
TORCH_LIB="$("$VENV/bin/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("torch").origin), "lib"))' 2>/dev/null)" \
  || echo "env.sh: no torch in $VENV: run scripts/install.sh first" >&2
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
# The onnxruntime wheel's library: the runtime's optional ONNX Runtime engine (cargo feature
# `onnxruntime`, [model].engine = "onnxruntime") loads it at run time; an ORT_DYLIB_PATH you set wins.
for lib in "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1*; do
  if [ -f "$lib" ] && [ -z "${ORT_DYLIB_PATH:-}" ]; then export ORT_DYLIB_PATH="$lib"; fi
done
