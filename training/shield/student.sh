#!/usr/bin/env bash
# Rebuild the deep stage as a contextual student, reproducibly (after train.sh,
# and after deep.sh's distillation step, whose build/static.kwst it uses):
#   training/shield/student.sh [OUT.kwsd]
# OUT defaults to crates/detect/src/shield/weights/deep.kwsd, the built-in deep
# stage. Needs the pinned torch (requirements-student.txt). Then rebuilds the
# CLI and evaluates every set in the modes fast, full and uncertain.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/crates/detect/src/shield/weights/deep.kwsd}"
cd "$root"
# 1. the token windows, cut and labelled by the Rust code that serves them
# shellcheck source=training/shield/windows.sh
source "$here/windows.sh"
cargo build --release -q -p keyward-detect --example shield_tokenize
"$bin/shield_tokenize" "$here/golden.jsonl" > "$here/build/golden_ids.jsonl"
# 2. the student (PyTorch, one thread, seeded); prints the golden logits that
#    crates/detect/src/shield/deep_tests.rs checks
# STUDENT_ARGS: extra student.py arguments (teacher.sh passes the teacher's soft targets)
# shellcheck disable=SC2086
python3 "$here/student.py" --static "$here/build/static.kwst" --dump "$here/build/student" \
    --out "$here/build/student_raw.kwsd" --golden-ids "$here/build/golden_ids.jsonl" ${STUDENT_ARGS:-}
# 3. the combination with the fast stage and the uncertainty band, as for the static head
cargo build --release -q -p keyward-detect --no-default-features --example shield_deep_train
KWSD_STUDENT="$here/build/student_raw.kwsd" "$bin/shield_deep_train" \
    "$here/build/static.kwst" "$here/build/train.jsonl" "$out" "$here/build/calib.jsonl"
# 4. every evaluation set, with the weights just written
cargo build --release -q -p keyward-detect --example shield_cli
python3 "$here/eval_table.py" "$bin/shield_cli" "$out"
