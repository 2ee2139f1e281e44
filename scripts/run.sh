#!/usr/bin/env bash
# run.sh: the README's run command. Installs what is missing (Debian packages, pinned data),
# builds, then runs the main job on the bundled default model (models/spikegpt-sotu.qslm):
# a short generation, perplexity on the SOTU test split and accuracy on the imdb sentences.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-data.sh
dir=$(bash scripts/build.sh normal)
model=models/spikegpt-sotu.qslm
echo "== qslm-generate: continuing \"The state of the Union is\" (greedy, 48 tokens)" >&2
"$dir/runtime/tools/qslm-generate" "$model" -t 0 -n 48 --stats "The state of the Union is"
echo "== qslm-eval: perplexity on the SOTU test split (2009-2021)" >&2
"$dir/runtime/tools/qslm-eval" "$model" --text .data/sotu/test.txt
echo "== qslm-eval: sentiment accuracy on the imdb sentences" >&2
"$dir/runtime/tools/qslm-eval" "$model" --labels .data/sentiment/test.jsonl
