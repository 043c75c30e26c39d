#!/usr/bin/env bash
# The main job on the embedded defaults: index the bundled sample corpus (Natural Instructions v1, ~20
# tasks) with the default AirRep encoder (all-MiniLM-L6-v2), attribute a few held-out queries to their
# training examples, rank the tasks by the Eq. 7 group score, and write a training-data selection.
# Usage: bash scripts/demo.sh [OUT_DIR]   (default runs/demo; the db is rebuilt each run)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
export TOKENIZERS_PARALLELISM=false
OUT=${1:-runs/demo}
start=$(date +%s)
rm -rf "$OUT/db"
mkdir -p "$OUT"
read -r TRAIN QUERIES < <(python -c "from airsearch.data import sample_corpus_path as c, sample_queries_path as q; print(c(), q())")
# three held-out queries from different tasks, and 40 targets for the selection
python - "$QUERIES" "$OUT" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
picked, seen = [], set()
for r in rows:
    if r["task"] not in seen and len(picked) < 3:
        picked.append(r)
        seen.add(r["task"])
with open(f"{sys.argv[2]}/queries.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in picked)
with open(f"{sys.argv[2]}/targets.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows[::5][:40])
PY

echo "== 1. index the sample corpus ($TRAIN)"
airsearch index "$TRAIN" --db "$OUT/db" --table corpus

echo; echo "== 2. which training examples explain these held-out outputs? (top 3 proponents each)"
airsearch -q query --db "$OUT/db" --queries "$OUT/queries.jsonl" -k 3 --preview-chars 90

echo; echo "== 3. which task most influenced this output? (--group-by task, Eq. 7 over every member)"
airsearch -q query --db "$OUT/db" \
  --prompt "Write a question about how long an event lasts. Sentence: The concert went on late into the night." \
  --response "How long did the concert last?" -k 2 --opponents --group-by task --preview-chars 80

echo; echo "== 4. select training data for 40 target examples (AirRep App. G best-rank rule)"
airsearch -q select --db "$OUT/db" --targets "$OUT/targets.jsonl" -n 300 --out "$OUT/selection.jsonl"
head -c 300 "$OUT/selection.jsonl"; echo " ..."

echo; echo "== 5. what the index holds"
airsearch info --db "$OUT/db"
echo; echo "demo finished in $(( $(date +%s) - start )) s; outputs in $OUT/"
echo; echo "== 6. browse it: serve the index (JSON API + web page at http://127.0.0.1:8000/), then open the page"
echo "airsearch serve --db $OUT/db --table corpus --port 8000"
