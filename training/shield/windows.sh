# Sourced by student.sh and teacher.sh, which set `here` and `root` and cd to the
# root first: checks that train.sh and deep.sh have run, builds the Rust trainer
# (without the built-in deep weights) and sets `bin` to its directory, then dumps
# the student's training windows into build/student (token ids, labels, weights
# and source groups of the 48-token windows, cut and labelled by the Rust code
# that serves them; the held-back rows and calibration documents apart).
[ -f "$here/build/train.jsonl" ] || { echo "run training/shield/train.sh first" >&2; exit 2; }
[ -f "$here/build/static.kwst" ] || { echo "run training/shield/deep.sh first (it writes build/static.kwst)" >&2; exit 2; }
cargo build --release -q -p keyward-detect --no-default-features --example shield_deep_train
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples"
KWSD_DUMP="$here/build/student" "$bin/shield_deep_train" \
    "$here/build/static.kwst" "$here/build/train.jsonl" /dev/null "$here/build/calib.jsonl"
