#!/usr/bin/env bash
# Zero-downtime rotation under load: a client sends requests for 60 s while the
# virtual key and the upstream key are rotated; it switches to the new virtual
# key inside the grace window. Prints the counts; exit 1 on any failed request.
# Usage: benches/rotation/run.sh [SECONDS]   (KEYWARD_BIN to use a built binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${KEYWARD_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyward-target}"
  cargo build --release -p keyward >&2
  KEYWARD_BIN="$CARGO_TARGET_DIR/release/keyward"
fi
exec python3 benches/rotation/rotate_under_load.py "$KEYWARD_BIN" "${1:-60}"
