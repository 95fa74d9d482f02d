"""Print the README's held-out figures for one deep-stage weights file.

Usage: python3 eval_table.py SHIELD_CLI [DEEP.kwsd]   (built-in weights without DEEP)
Runs `shield_cli eval --json` on every set in build/eval/ in the modes fast,
full and uncertain, and prints one line per set with the figure the README
reports for it.
"""

import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
SETS = [
    ("deepset_test", "accuracy", "auc"),
    ("jackhhao_test", "accuracy", "fpr"),
    ("notinject", "accuracy", None),
    ("cyberseceval", "recall", None),
    ("docs_heldout", "recall_at_target_fpr", "auc"),
    ("docs_seen", "recall_at_target_fpr", "auc"),
    ("real_crates", "accuracy", None),
    ("real_crates_injected", "recall_at_target_fpr", "auc"),
    ("local_rust_html", "accuracy", None),
    ("local_rust_html_text", "accuracy", None),
    ("local_python_stdlib", "accuracy", None),
    ("local_debian_docs", "accuracy", None),
] + [
    (f"obf_{name}_{mode}", fig, None)
    for mode in ("middle", "swap", "zalgo", "strike", "accents", "rot13", "reverse", "reverse_words", "upside_down",
                 "symbols", "base64", "base32", "attachment", "typos")
    for name, fig in (("attacks", "recall"), ("notinject", "accuracy"))
]


def main():
    cli = sys.argv[1]
    extra = ["--deep-weights", sys.argv[2]] if len(sys.argv) > 2 else []
    for name, fig, aux in SETS:
        if not os.path.exists(f"{here}/build/eval/{name}.jsonl"):
            print(f"{name:14} (not built: prepare.py found no Cargo registry cache)", flush=True)
            continue
        cells = []
        for stage in ("fast", "full", "uncertain"):
            out = subprocess.run(
                [cli, "eval", "--data", f"{here}/build/eval/{name}.jsonl", "--stage", stage, "--json", *extra],
                check=True, capture_output=True, text=True,
            ).stdout
            m = json.loads(out)
            cell = f"{m[fig]:.3f}"
            if aux:
                cell += f" ({aux} {m[aux]:.3f})"
            cells.append(cell)
        print(f"{name:14} {fig:22} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
