#!/usr/bin/env bash
# Leak-scanner benchmark: keyward vs Kingfisher, detect-secrets and ripgrep on
# one synthetic corpus (see gen_corpus.py), same inputs, same run.
#
#   benches/scan/bench.sh [WORKDIR]        (default: ~/.cache/keyward-bench-scan)
#
# Installs the pinned peers into a venv under WORKDIR, builds keyward-scan in
# release mode, generates the corpora (seeded) and prints the tables that
# benches/README.md quotes. gitleaks is not run: no installable build exists for
# this machine's package sources (Debian bookworm has none; see README).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$HOME/.cache/keyward-bench-scan}"
mkdir -p "$work"

KINGFISHER_VERSION=2.14.0
DETECT_SECRETS_VERSION=1.5.0
RIPGREP_DEB_VERSION=13.0.0-4+b2

if [ ! -x "$work/venv/bin/kingfisher" ] || [ ! -x "$work/venv/bin/detect-secrets" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q "kingfisher-bin==$KINGFISHER_VERSION" "detect-secrets==$DETECT_SECRETS_VERSION"
fi
if ! command -v rg >/dev/null; then
    apt-get install -y -qq "ripgrep=$RIPGREP_DEB_VERSION"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$work/target}"
(cd "$root" && cargo build --release -p keyward-scanner --bin keyward-scan)
kw="$CARGO_TARGET_DIR/release/keyward-scan"

# large corpus: ~280 MB tree, 820 commits (~140 MB of blobs)
[ -f "$work/large/truth.json" ] || python3 "$here/gen_corpus.py" --out "$work/large" --seed 42 --tree-mb 300 --commits 800
# small corpus for detect-secrets (pure Python, ~0.2 MB/s)
[ -f "$work/small/truth.json" ] || python3 "$here/gen_corpus.py" --out "$work/small" --seed 7 --tree-mb 20 --commits 120

python3 "$here/run.py" --corpus "$work/large" --runs 5 --keyward "$kw" \
    --kingfisher "$work/venv/bin/kingfisher" --rg rg --json "$work/large.json"
python3 "$here/run.py" --corpus "$work/small" --runs 1 --keyward "$kw" \
    --kingfisher "$work/venv/bin/kingfisher" --detect-secrets "$work/venv/bin/detect-secrets" \
    --rg rg --json "$work/small.json"
