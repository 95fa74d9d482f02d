#!/usr/bin/env bash
# Rebuild the deep stage as a contextual student (after train.sh and deep.sh's
# distillation, whose build/train.jsonl, build/calib.jsonl and build/static.kwst
# it uses), reproducibly:
#   training/shield/student.sh [OUT.kwsd]
# OUT defaults to crates/detect/src/shield/weights/student.kwsd. Needs the
# pinned torch (requirements-student.txt). Then evaluates both stages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/crates/detect/src/shield/weights/student.kwsd}"
cd "$root"
[ -f "$here/build/train.jsonl" ] || { echo "run training/shield/train.sh first" >&2; exit 2; }
[ -f "$here/build/static.kwst" ] || { echo "run training/shield/deep.sh first (it writes build/static.kwst)" >&2; exit 2; }
cargo build --release -q -p keyward-detect --no-default-features --example shield_deep_train
cargo build --release -q -p keyward-detect --example shield_tokenize --example shield_cli
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples"
# 1. the token windows, cut and labelled by the Rust code that serves them
KWSD_DUMP="$here/build/student" "$bin/shield_deep_train" \
    "$here/build/static.kwst" "$here/build/train.jsonl" /dev/null "$here/build/calib.jsonl"
"$bin/shield_tokenize" "$here/golden.jsonl" > "$here/build/golden_ids.jsonl"
# 2. the student (PyTorch, one thread, seeded); prints the golden logits that
#    crates/detect/src/shield/deep_tests.rs checks
python3 "$here/student.py" --static "$here/build/static.kwst" --dump "$here/build/student" \
    --out "$here/build/student_raw.kwsd" --golden-ids "$here/build/golden_ids.jsonl"
# 3. the combination with the fast stage, as for the static head
KWSD_STUDENT="$here/build/student_raw.kwsd" "$bin/shield_deep_train" \
    "$here/build/static.kwst" "$here/build/train.jsonl" "$out" "$here/build/calib.jsonl"
