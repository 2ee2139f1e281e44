// make_golden.js: writes golden_ids.json, the GPT-2 token ids of golden_text.txt according to the
// reference encoder, npm gpt-3-encoder@1.1.4 (the tokenizer tests compare qslm's ids with these).
//
// Run from the repository root:
//   tmp=$(mktemp -d) && (cd "$tmp" && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz)
//   node tests/data/tokenizer/make_golden.js "$tmp/package"
//
// It also re-runs the BPE with exact pair keys: gpt-3-encoder looks merges up by the string
// `${a},${b}`, which two different pairs can share when a token holds a comma. If the text ever
// hit that quirk, the reference ids would not be GPT-2's, so the script stops instead of writing
// them. It does not fetch anything itself.
'use strict';
const fs = require('fs');
const path = require('path');

const pkgDir = process.argv[2];
if (!pkgDir) {
  console.error('usage: node make_golden.js PATH/TO/gpt-3-encoder/package');
  process.exit(2);
}
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf-8'));
if (pkg.name !== 'gpt-3-encoder' || pkg.version !== '1.1.4') {
  console.error(`expected gpt-3-encoder@1.1.4, found ${pkg.name}@${pkg.version}`);
  process.exit(1);
}
const { encode, decode } = require(path.resolve(pkgDir));

const here = __dirname;
const text = fs.readFileSync(path.join(here, 'golden_text.txt'), 'utf-8');
const ids = encode(text);

if (decode(ids) !== text) throw new Error('reference decode(encode(text)) differs from the text');
if (ids.some(x => !Number.isInteger(x))) throw new Error('reference produced a non-integer id');

// The same BPE with pair keys that cannot collide (a separator no token contains).
const encoder = JSON.parse(fs.readFileSync(path.join(pkgDir, 'encoder.json'), 'utf-8'));
const lines = fs.readFileSync(path.join(pkgDir, 'vocab.bpe'), 'utf-8').split('\n');
const ranks = new Map();
lines.slice(1, lines.length - 1).forEach((l, i) => ranks.set(l.split(' ').join('\u0000'), i));
const byteChar = [];
{
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  let n = 0;
  for (let b = 0; b < 256; b++) byteChar[b] = bs.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
}
function bpe(word) {
  for (;;) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(word[i] + '\u0000' + word[i + 1]);
      if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
    }
    if (best < 0) return word;
    const a = word[best], b = word[best + 1], out = [];
    for (let i = 0; i < word.length;) {
      if (i + 1 < word.length && word[i] === a && word[i + 1] === b) { out.push(a + b); i += 2; }
      else out.push(word[i++]);
    }
    word = out;
  }
}
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const exact = [];
for (const m of text.matchAll(pat)) {
  const word = Array.from(Buffer.from(m[0], 'utf-8')).map(b => byteChar[b]);
  for (const tok of bpe(word)) exact.push(encoder[tok]);
}
if (exact.length !== ids.length || exact.some((x, i) => x !== ids[i]))
  throw new Error('the text hits gpt-3-encoder\'s comma-key quirk: change the text');

const out = {
  comment: 'GPT-2 ids of golden_text.txt from npm gpt-3-encoder@1.1.4; made by make_golden.js',
  reference: 'gpt-3-encoder@1.1.4',
  node: process.version,
  text_bytes: Buffer.byteLength(text, 'utf-8'),
  ids,
};
fs.writeFileSync(path.join(here, 'golden_ids.json'), JSON.stringify(out) + '\n');
console.log(`wrote ${ids.length} ids for ${out.text_bytes} bytes`);
