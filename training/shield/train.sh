#!/usr/bin/env bash
# Rebuild the shield's fast-stage weights from scratch, reproducibly:
#   training/shield/train.sh [DATA_DIR]
# DATA_DIR defaults to ../shared/data/prompt-injection next to the repository.
# Writes crates/detect/src/shield/weights/fast.kwsh, then evaluates on the
# held-out sets (training/shield/build/eval/*.jsonl) with the CLI code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${1:-$root/../shared/data/prompt-injection}"
cd "$root"
# the pinned source distributions whose documentation is trained on (real_docs.py)
python3 "$here/fetch_docs.py" --out "$here/build/docs_src"
python3 "$here/prepare.py" --data "$data" --out "$here/build"
cargo run --release -q -p keyward-detect --example shield_train -- \
    "$here/build/train.jsonl" crates/detect/src/shield/weights/fast.kwsh
cargo build --release -q -p keyward-detect --example shield_cli
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/shield_cli"
for set in deepset_test jackhhao_test notinject cyberseceval docs_heldout docs_seen real_crates real_crates_injected; do
    "$bin" eval --data "$here/build/eval/$set.jsonl" --stage fast --json
done
