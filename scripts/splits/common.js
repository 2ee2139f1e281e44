// common.js: what every split builder of make-splits.js shares: failing loudly, writing only
// what changed, and the hashes recorded in each splits.json.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

function die(msg) {
  process.stderr.write(`make-splits: error: ${msg}\n`);
  process.exit(1);
}
function note(msg) {
  process.stderr.write(`make-splits: ${msg}\n`);
}
function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}
function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    return die(`cannot read ${file}: ${e.message}`);
  }
}
// Write buf to file unless the file already holds exactly these bytes, so that an unchanged
// output keeps its mtime (the trainer's token caches key on it).
function writeIfChanged(file, buf) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  try {
    if (fs.readFileSync(file).equals(buf)) return false;
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, buf);
  fs.renameSync(tmp, file);
  return true;
}
// Strip spaces and tabs at both ends; nothing else in the text is touched.
function trimBlanks(s) {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}
function jsonText(obj) {
  return Buffer.from(`${JSON.stringify(obj, null, 2)}\n`, 'utf8');
}
// A stable bucket 0..n-1 for a key: the split a document falls in must not depend on the order
// the files are listed in, nor change when another document is added.
function bucketOf(key, n) {
  return crypto.createHash('sha256').update(key).digest().readUInt32BE(0) % n;
}

module.exports = { die, note, sha256, readJson, writeIfChanged, trimBlanks, jsonText, bucketOf };
