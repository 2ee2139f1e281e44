#!/usr/bin/env bash
# test_cli.sh: qslm-eval and qslm-generate as a user runs them — results on a small random model
# with the default tokenizer embedded, and every kind of bad argument or file: a clear message
# naming what is wrong, and exit code 2.
#   test_cli.sh QSLM_EVAL QSLM_GENERATE MAKE_TEST_MODEL TOKENIZER_JSON
set -uo pipefail
eval_bin=$1 gen_bin=$2 make_model=$3 tokenizer=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# expect CODE PATTERN -- CMD...: exit code CODE and stderr+stdout matching PATTERN
expect() {
  local code=$1 pattern=$2; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$code" ] && grep -qE -- "$pattern" <<<"$out"; then ok "$* -> $code /$pattern/"
  else bad "$* -> exit $rc (want $code), output: $out"; fi
}

"$make_model" "$tmp/m.qslm" --layers 2 --d 32 --classes 2 --tokenizer "$tokenizer" --seed 3 || { echo "cannot make model"; exit 1; }
"$make_model" "$tmp/lm-only.qslm" --layers 1 --d 32 --tokenizer "$tokenizer" || exit 1
"$make_model" "$tmp/no-tok.qslm" --layers 1 --d 32 --vocab 64 || exit 1
printf 'The Congress shall have power to lay and collect taxes.\nAnd so, my fellow Americans: ask not.\n' >"$tmp/text.txt"
printf '{"text": "good and great", "label": 1}\n\n{"text": "bad, awful", "label": 0}\n{"text": "fine", "label": 1}\n' >"$tmp/labels.jsonl"

# Results.
expect 0 '^perplexity [0-9.]+ over [0-9]+ predictions' -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt"
json=$("$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --json --window 8 --batch 3)
if node -e 'const o=JSON.parse(process.argv[1]); if(!(o.ppl>1 && o.tokens>8 && o.seconds>=0 && o.window===8)) process.exit(1)' "$json"
then ok "--json perplexity object: $json"; else bad "--json perplexity object: $json"; fi
# The batch size changes nothing but speed.
a=$("$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --json --window 8 --batch 1 | node -pe 'JSON.parse(require("fs").readFileSync(0)).ppl')
b=$("$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --json --window 8 --batch 4 | node -pe 'JSON.parse(require("fs").readFileSync(0)).ppl')
if node -e "process.exit(Math.abs($a-$b) < 1e-4*$a ? 0 : 1)"; then ok "ppl batch 1 = batch 4 ($a, $b)"; else bad "ppl batch 1 $a != batch 4 $b"; fi
json=$("$eval_bin" "$tmp/m.qslm" --labels "$tmp/labels.jsonl" --json)
if node -e 'const o=JSON.parse(process.argv[1]); if(!(o.total===3 && o.correct<=3 && Math.abs(o.accuracy-o.correct/3)<1e-6 && o.tokens>3)) process.exit(1)' "$json"
then ok "--json accuracy object: $json"; else bad "--json accuracy object: $json"; fi
expect 0 'usage: qslm-eval' -- "$eval_bin" --help

# Bad arguments.
expect 2 'exactly one of --text and --labels' -- "$eval_bin" "$tmp/m.qslm"
expect 2 'exactly one of --text and --labels' -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --labels "$tmp/labels.jsonl"
expect 2 'exactly one MODEL' -- "$eval_bin" --text "$tmp/text.txt"
expect 2 '--window must be an integer in 2' -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --window 1
expect 2 '--batch must be an integer' -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --batch x
expect 2 'unrecognized option' -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/text.txt" --bogus
# Bad files.
expect 2 "$tmp/missing.qslm: cannot open" -- "$eval_bin" "$tmp/missing.qslm" --text "$tmp/text.txt"
printf 'not a model' >"$tmp/junk.qslm"
expect 2 "$tmp/junk.qslm: .*(shorter|magic)" -- "$eval_bin" "$tmp/junk.qslm" --text "$tmp/text.txt"
expect 2 "$tmp/nope.txt: cannot open" -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/nope.txt"
printf 'a' >"$tmp/one.txt"
expect 2 'perplexity needs at least 2' -- "$eval_bin" "$tmp/m.qslm" --text "$tmp/one.txt"
expect 2 'embeds no tokenizer' -- "$eval_bin" "$tmp/no-tok.qslm" --text "$tmp/text.txt"
expect 2 'has no classifier head' -- "$eval_bin" "$tmp/lm-only.qslm" --labels "$tmp/labels.jsonl"
printf '{"text": "ok", "label": 1}\n{"text": "broken", \n' >"$tmp/badjson.jsonl"
expect 2 "$tmp/badjson.jsonl:2: not valid JSON" -- "$eval_bin" "$tmp/m.qslm" --labels "$tmp/badjson.jsonl"
printf '{"text": "ok", "label": 5}\n' >"$tmp/badlabel.jsonl"
expect 2 'badlabel.jsonl:1: needs an integer field "label" in 0..1' -- "$eval_bin" "$tmp/m.qslm" --labels "$tmp/badlabel.jsonl"
printf '{"label": 1}\n' >"$tmp/notext.jsonl"
expect 2 'notext.jsonl:1: needs a string field "text"' -- "$eval_bin" "$tmp/m.qslm" --labels "$tmp/notext.jsonl"
printf '\n\n' >"$tmp/empty.jsonl"
expect 2 'no labelled lines' -- "$eval_bin" "$tmp/m.qslm" --labels "$tmp/empty.jsonl"

# qslm-generate: greedy is deterministic; a seed reproduces a sampled run.
g1=$("$gen_bin" "$tmp/m.qslm" -t 0 -n 12 "The Congress")
g2=$("$gen_bin" "$tmp/m.qslm" -t 0 -n 12 "The Congress" -j 1)
[ "$g1" = "$g2" ] && ok "greedy generation is deterministic across thread counts" || bad "greedy: '$g1' vs '$g2'"
s1=$("$gen_bin" "$tmp/m.qslm" -s 7 -n 12 "The Congress")
s2=$("$gen_bin" "$tmp/m.qslm" -s 7 -n 12 "The Congress")
[ "$s1" = "$s2" ] && ok "seeded sampling reproduces" || bad "seed 7: '$s1' vs '$s2'"
expect 0 'generated 5 tokens' -- "$gen_bin" "$tmp/m.qslm" -n 5 --stats "Hello"
expect 2 'expected MODEL and PROMPT' -- "$gen_bin" "$tmp/m.qslm"
expect 2 '--temperature must be a number' -- "$gen_bin" "$tmp/m.qslm" -t -1 "x"
expect 2 '--top-p must be a number' -- "$gen_bin" "$tmp/m.qslm" -p 0 "x"
expect 2 'the prompt is empty' -- "$gen_bin" "$tmp/m.qslm" ""
expect 2 "$tmp/missing.qslm: cannot open" -- "$gen_bin" "$tmp/missing.qslm" "x"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
