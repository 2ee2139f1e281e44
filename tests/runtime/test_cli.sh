#!/usr/bin/env bash
# test_cli.sh: qslm-eval, qslm-generate and qslm-quantize as a user runs them — results on a small
# random model with the default tokenizer embedded, and every kind of bad argument or file: a
# clear message naming what is wrong, and exit code 2 (1 when the work itself fails).
#   test_cli.sh QSLM_EVAL QSLM_GENERATE QSLM_QUANTIZE MAKE_TEST_MODEL TOKENIZER_JSON
set -uo pipefail
eval_bin=$1 gen_bin=$2 quant_bin=$3 make_model=$4 tokenizer=$5
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

# Two named heads: --labels TASK=FILE measures each head on its own file, one line each; a plain
# FILE is the first head; the second head's labels go to 0..2.
"$make_model" "$tmp/h.qslm" --layers 1 --d 32 --task sentiment=negative,positive --task topic=a,b,c \
  --tokenizer "$tokenizer" --seed 4 || exit 1
printf '{"text": "war", "label": 2}\n{"text": "jobs", "label": 0}\n' >"$tmp/topic.jsonl"
expect 0 '^task topic: accuracy [0-9.]+ \([0-9]/2\)' -- "$eval_bin" "$tmp/h.qslm" --labels topic="$tmp/topic.jsonl"
out=$("$eval_bin" "$tmp/h.qslm" --labels sentiment="$tmp/labels.jsonl" --labels topic="$tmp/topic.jsonl")
if grep -qE '^task sentiment: accuracy [0-9.]+ \([0-9]/3\)' <<<"$out" && grep -qE '^task topic: accuracy [0-9.]+ \([0-9]/2\)' <<<"$out" &&
   [ "$(wc -l <<<"$out")" -eq 2 ]; then ok "--labels per task: one line per head"; else bad "--labels per task: $out"; fi
a=$("$eval_bin" "$tmp/h.qslm" --labels "$tmp/labels.jsonl" --json | node -pe 'JSON.parse(require("fs").readFileSync(0)).nll')
b=$("$eval_bin" "$tmp/h.qslm" --labels sentiment="$tmp/labels.jsonl" --json | node -pe 'JSON.parse(require("fs").readFileSync(0)).tasks[0].nll')
c=$("$eval_bin" "$tmp/h.qslm" --labels topic="$tmp/topic.jsonl" --json | node -pe 'const t=JSON.parse(require("fs").readFileSync(0)).tasks[0]; t.task+" "+t.total')
if [ "$a" = "$b" ] && [ "$c" = "topic 2" ]; then ok "plain FILE = the first task; --json tasks array"; else bad "first head $a vs $b; topic: $c"; fi
expect 2 'topic.jsonl:1: needs an integer field "label" in 0..1' -- "$eval_bin" "$tmp/h.qslm" --labels "$tmp/topic.jsonl"
expect 2 "two --labels for task 'topic'" -- "$eval_bin" "$tmp/h.qslm" --labels topic="$tmp/topic.jsonl" --labels topic="$tmp/topic.jsonl"
expect 2 "mood=.*cannot open" -- "$eval_bin" "$tmp/h.qslm" --labels mood="$tmp/topic.jsonl"

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
# --check-tokenizer: the loader's verdict, for converters.
expect 0 "$tokenizer: ok, 4096 token ids" -- "$eval_bin" --check-tokenizer "$tokenizer"
printf '{"normalizer": {"type": "Lowercase"}, "model": {}}' >"$tmp/lower.json"
expect 2 "$tmp/lower.json: normalizer Lowercase is not supported" -- "$eval_bin" --check-tokenizer "$tmp/lower.json"
expect 2 "$tmp/none.json: cannot open" -- "$eval_bin" --check-tokenizer "$tmp/none.json"
expect 2 'takes no MODEL' -- "$eval_bin" --check-tokenizer "$tokenizer" "$tmp/m.qslm"
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

# qslm-quantize: a conversion qslm-eval loads, the head kept apart, and output written atomically.
ppl() { "$eval_bin" "$1" --text "$tmp/text.txt" --json | node -pe 'JSON.parse(require("fs").readFileSync(0)).ppl'; }
# file_has FILE STRING: the file's bytes contain STRING (quant.setting is stored as plain JSON)
file_has() { grep -qaF -- "$2" "$1"; }
expect 0 'usage: qslm-quantize' -- "$quant_bin" --help
expect 0 "wrote $tmp/q4.qslm" -- "$quant_bin" "$tmp/m.qslm" "$tmp/q4.qslm" --type q4_0 --threads 2
expect 0 '^perplexity [0-9.]+ over [0-9]+ predictions' -- "$eval_bin" "$tmp/q4.qslm" --text "$tmp/text.txt"
# The same model: perplexity within 5% of f32's (random weights: about the vocabulary size).
a=$(ppl "$tmp/m.qslm") b=$(ppl "$tmp/q4.qslm")
if node -e "process.exit(Math.abs($b / $a - 1) < 0.05 ? 0 : 1)"; then ok "q4_0 ppl $b near f32's $a"
else bad "q4_0 ppl $b is not within 5% of f32's $a"; fi
if file_has "$tmp/q4.qslm" '"head.weight":"q4_0"' && file_has "$tmp/q4.qslm" '"emb.weight":"q4_0"' &&
   file_has "$tmp/q4.qslm" '"blocks.1.ffn.value.weight":"q4_0"' && file_has "$tmp/q4.qslm" 'requantized from m.qslm'
then ok "q4_0: quant.setting lists every matrix as q4_0, provenance notes the conversion"
else bad "q4_0: quant.setting or provenance missing"; fi
expect 0 "wrote $tmp/q4h.qslm" -- "$quant_bin" "$tmp/m.qslm" "$tmp/q4h.qslm" --type q4_0 --keep-head f32
# The head (4096 x 32) costs 524288 bytes in f32, 73728 in q4_0: the file grows by at least that.
grow=$(( $(stat -c %s "$tmp/q4h.qslm") - $(stat -c %s "$tmp/q4.qslm") ))
if file_has "$tmp/q4h.qslm" '"head.weight":"f32"' && file_has "$tmp/q4h.qslm" '"cls.weight":"f32"' &&
   file_has "$tmp/q4h.qslm" '"emb.weight":"q4_0"' && [ "$grow" -ge $((524288 - 73728)) ]
then ok "--keep-head f32: head and classifier f32, the rest q4_0 ($grow bytes more)"
else bad "--keep-head f32: quant.setting or size wrong (grew by $grow bytes)"; fi
expect 0 '^perplexity [0-9.]+' -- "$eval_bin" "$tmp/q4h.qslm" --text "$tmp/text.txt"
expect 0 "wrote $tmp/hq4.qslm" -- "$quant_bin" "$tmp/h.qslm" "$tmp/hq4.qslm" --type q4_0 --keep-head f32
if file_has "$tmp/hq4.qslm" '"cls.weight":"f32"' && file_has "$tmp/hq4.qslm" '"cls.1.weight":"f32"' &&
   file_has "$tmp/hq4.qslm" 'head.task.1.name'
then ok "--keep-head f32 keeps every classifier head, and the head names come along"
else bad "--keep-head with two heads: quant.setting or names wrong"; fi
# Bad arguments and files: exit 2, nothing written.
expect 2 "--type: unknown type 'q7_0'" -- "$quant_bin" "$tmp/m.qslm" "$tmp/x.qslm" --type q7_0
expect 2 "--keep-head: unknown type 'bogus'" -- "$quant_bin" "$tmp/m.qslm" "$tmp/x.qslm" --type q4_0 --keep-head bogus
expect 2 '--type is required' -- "$quant_bin" "$tmp/m.qslm" "$tmp/x.qslm"
expect 2 'expected an input and an output file' -- "$quant_bin" "$tmp/m.qslm" --type q4_0
expect 2 'must not be the input' -- "$quant_bin" "$tmp/m.qslm" "$tmp/m.qslm" --type q4_0
expect 2 '--threads must be an integer' -- "$quant_bin" "$tmp/m.qslm" "$tmp/x.qslm" --type q4_0 --threads 0
expect 2 "$tmp/missing.qslm: cannot open" -- "$quant_bin" "$tmp/missing.qslm" "$tmp/x.qslm" --type q4_0
expect 2 "$tmp/junk.qslm: .*(shorter|magic)" -- "$quant_bin" "$tmp/junk.qslm" "$tmp/x.qslm" --type q4_0
[ ! -e "$tmp/x.qslm" ] && ok "no output after bad arguments" || bad "$tmp/x.qslm written after bad arguments"
# Failures: exit 1 naming the path; no temporary file left behind (the output directory case
# writes the whole temporary, then cannot rename it), an existing output untouched.
expect 1 "$tmp/nodir/out.qslm.*cannot create" -- "$quant_bin" "$tmp/m.qslm" "$tmp/nodir/out.qslm" --type q4_0
mkdir "$tmp/outdir"
expect 1 "$tmp/outdir: cannot rename into place" -- "$quant_bin" "$tmp/m.qslm" "$tmp/outdir" --type q4_0
# A NaN in head.weight (patched through the tensor table): the conversion itself fails.
node -e '
  const fs = require("fs"), b = fs.readFileSync(process.argv[1]);
  let o = Number(b.readBigUInt64LE(32));              // table_offset
  for (let i = 0, n = b.readUInt32LE(56); i < n; i++) { // tensor_count entries
    const len = b.readUInt32LE(o), name = b.toString("latin1", o + 4, o + 4 + len);
    const nd = b.readUInt32LE(o + 8 + len);
    o += 12 + len + 8 * nd;
    if (name === "head.weight") b.writeFloatLE(NaN, Number(b.readBigUInt64LE(o)));
    o += 16;
  }
  fs.writeFileSync(process.argv[2], b);' "$tmp/m.qslm" "$tmp/nan.qslm"
cp "$tmp/q4.qslm" "$tmp/keep.qslm"
expect 1 "$tmp/nan.qslm: tensor 'head.weight' has a non-finite weight" -- "$quant_bin" "$tmp/nan.qslm" "$tmp/keep.qslm" --type q4_0
cmp -s "$tmp/q4.qslm" "$tmp/keep.qslm" && ok "a failed conversion leaves the existing output as it was" \
  || bad "a failed conversion changed $tmp/keep.qslm"
left=$(find "$tmp" -name '*.tmp.*')
[ -z "$left" ] && ok "no temporary files left after failures" || bad "temporary files left: $left"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
