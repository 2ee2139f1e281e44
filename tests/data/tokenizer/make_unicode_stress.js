// make_unicode_stress.js: writes unicode_stress.txt, text that exercises every path of the
// tokenizer that plain English does not: combining marks in and out of canonical order, NFC/NFD
// pairs and singletons, compatibility characters, Hangul (syllables and conjoining jamo), CJK,
// emoji ZWJ and flag sequences, right-to-left scripts with their marks, white space runs of every
// Unicode White_Space character (and the near-misses U+FEFF, U+180E, U+200B), digits of many
// scripts, C0/C1 controls, private use, astral letters, contractions, and runs of ASCII spaces of
// every length 1..60 (GPT-NeoX's added tokens are the runs of 2..24).
//
// Deterministic: a fixed-seed PRNG, no input. Run from the repository root:
//   node tests/data/tokenizer/make_unicode_stress.js > tests/data/tokenizer/unicode_stress.txt
'use strict';

let seed = 0x9e3779b9;
function rand(n) { // xorshift32, uniform enough for picking
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % n;
}
const pick = (a) => a[rand(a.length)];
const cp = (c) => String.fromCodePoint(c);
const range = (lo, hi) => { const r = []; for (let c = lo; c <= hi; c++) r.push(c); return r; };
const out = [];
const line = (s) => out.push(s);

const words = ['the', 'Union', 'state', 'of', 'peace', 'naïve', 'café', 'Zürich', 'über', 'façade',
  'résumé', 'coöperate', 'São', 'Ελλάδα', 'Москва', 'שלום', 'مرحبا', '東京', '서울', 'नमस्ते',
  'ภาษาไทย', 'Ωmega', 'ﬁne', 'x²', 'I\'ll', 'it\'s', 'we\'re', 'they\'ve', 'I\'m', 'he\'d',
  'don\'t', 'IT\'S', 'it’s', 'rock\'n\'roll'];

// 1. Combining marks: random stacks on Latin, Greek and Cyrillic bases, in random order (NFC
// reorders them by combining class and composes what it can).
const bases = [...'aeiouyAEIOUYnNcCsSzZgkαεηιοωΑΩаеиоуАЕ'];
const marks = [...range(0x300, 0x36f), 0x1ab0, 0x1dc0, 0x20d0, 0x20e3, 0x302a, 0x3099, 0xfe20];
for (let i = 0; i < 60; i++) {
  let w = '';
  for (let k = 0; k < 1 + rand(6); k++) {
    w += pick(bases);
    for (let m = 0; m < rand(4); m++) w += cp(pick(marks));
  }
  line(`${pick(words)} ${w} ${pick(words)}`);
}

// 2. NFC/NFD pairs and singletons, each written both ways and in a sentence.
const pairs = ['é', 'Å', 'ñ', 'ü', 'ḱ', 'ǖ', 'ệ', 'ῷ', 'ﬀ', 'Ω', 'Å', 'K', '가', '각', '힣', 'が', 'パ',
  'ﾊﾟ', '①', '㎏', 'Ａ', 'ｶ', '½', 'ǅ', 'ſ', 'ẛ', 'ϓ', 'ώ', '῭', '\u0958', '\u0eb3', '\u0f73'];
for (const p of pairs) {
  const forms = ['NFC', 'NFD', 'NFKC', 'NFKD'].map((f) => p.normalize(f));
  line(`${forms.join(' ')} ${forms.join('')} in ${pick(words)}${forms[1]}${pick(words)}`);
}

// 3. Hangul: precomposed syllables, conjoining jamo (L V T) that compose, and ones that do not.
{
  let s = '';
  for (let i = 0; i < 40; i++) s += cp(0xac00 + rand(11172));
  line(s);
  let j = '';
  for (let i = 0; i < 40; i++) {
    j += cp(0x1100 + rand(19)) + cp(0x1161 + rand(21));
    if (rand(2)) j += cp(0x11a8 + rand(27));
    if (rand(5) === 0) j += ' ';
  }
  line(j);
  line('\u1100\u1100\u1161 \u1161\u11a8 \u3131\u314f \uac00\u11a8 \ud7a3\u11a8 \u115f\u1160');
}

// 4. CJK, kana, and full-width forms, with and without spaces and CJK punctuation.
for (let i = 0; i < 12; i++) {
  let s = '';
  for (let k = 0; k < 30; k++) {
    const r = rand(10);
    s += r < 5 ? cp(0x4e00 + rand(0x5200)) : r < 7 ? cp(0x3041 + rand(86)) : r < 8 ? cp(0x30a1 + rand(90))
      : r < 9 ? cp(0xff01 + rand(94)) : pick(['、', '。', '「', '」', ' ', '\u3000', '・']);
  }
  line(s);
}
line('𠀀𠀁𪚥𫝀𬺰 𰀀 ㊀㊁ 〇〡〢〩');

// 5. Emoji: ZWJ families, skin tones, flags, keycaps, variation selectors, tags.
line('👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🏴‍☠️ 🇫🇷🇩🇪🇯🇵 🇺🇳 1️⃣ #️⃣ *️⃣ ❤️ ❤︎ ☺️ 👍🏻👍🏼👍🏽👍🏾👍🏿 🧑‍🤝‍🧑');
line('🏴󠁧󠁢󠁳󠁣󠁴󠁿 🏴󠁧󠁢󠁷󠁬󠁳󠁿 😀😁😂🤣😃 😀 😀  😀\t😀 a😀b 1😀2 🔟 ©️ ®️ ™️ 〰️');
for (let i = 0; i < 6; i++) {
  let s = '';
  for (let k = 0; k < 20; k++) s += cp(0x1f300 + rand(0x2ff)) + (rand(3) ? '' : pick(['\u200d', '\ufe0f', ' ', cp(0x1f3fb + rand(5))]));
  line(s);
}

// 6. Right to left: Arabic with harakat, Persian, Hebrew with niqqud, marks and digits.
line('بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ ١٢٣٤٥٦٧٨٩٠ ۱۲۳۴ فارسی‌ها');
line('בְּרֵאשִׁית בָּרָא אֱלֹהִים \u200fשלום\u200e hello \u202bמוטבע\u202c \u2067isolate\u2069 123 ﭐ ﷺ ﻻ');
line('عربي English עברית mixed 12 ٣ 45');

// 7. White space runs of every kind, between words and at the ends of lines.
const spaces = [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, ...range(0x2000, 0x200a),
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff, 0x180e, 0x200b, 0x2060];
for (const s of spaces) {
  const c = cp(s);
  line(`a${c}b${c.repeat(2)}c${c.repeat(3)}d ${c}e${c} f${c.repeat(5)} ${c.repeat(2)}g${c}`);
  line(`${c}${c}word${c}.${c}1${c}${c}'s${c}`);
}
for (let i = 0; i < 40; i++) {
  let s = pick(words);
  for (let k = 0; k < 8; k++) {
    let run = '';
    for (let m = 0; m < 1 + rand(7); m++) run += cp(pick(spaces));
    s += run + pick(words);
  }
  line(s + (rand(2) ? ' ' : ''));
}
for (let n = 1; n <= 60; n++) line(`x${' '.repeat(n)}y${' '.repeat(n)}1${' '.repeat(n)}!${' '.repeat(n)}`);
line(`${' '.repeat(25)}indented by 25\n${' '.repeat(48)}by 48\n\t\t  \t mixed`);
line('\n\n\n\r\n\r\n \n \n');

// 8. Digits: every decimal digit set below, plus other numbers (Nl, No) and digit/letter mixes.
const zeros = [0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6,
  0xd66, 0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80,
  0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xaa50, 0xabf0, 0xff10,
  0x104a0, 0x11066, 0x1d7ce, 0x1e950, 0x1fbf0];
for (const z of zeros) {
  let d = '';
  for (let k = 0; k < 12; k++) d += cp(z + rand(10));
  line(`${d} ${d.slice(0, 3)}x${d.slice(3)} v${d}. ${cp(z)}${cp(z + 1)}'s`);
}
line('Ⅻ ⅻ ↀ 〇 ² ³ ¹ ¼ ½ ¾ ⑳ ⒇ ⒛ ㉑ 𐄇 𝟘𝟙𝟚 3.14159 1,000,000 0x1F 1e-9 2021-12-31');

// 9. Controls and odd code points: C0, DEL, C1, U+FFFD, private use, noncharacters, tags.
{
  let s = '';
  for (const c of [...range(0x00, 0x1f), 0x7f, ...range(0x80, 0x9f)]) s += 'a' + cp(c);
  line(s);
  line(`pua \ue000\ue001\uf8ff \u{f0000}\u{ffffd} \u{100000} repl \ufffd\ufffd nonchar \ufdd0 \ufffe \uffff \u{1fffe}`);
  line(`tags a\u{e0041}\u{e0042}\u{e007f}b soft\u00adhyphen zw\u200cnj zw\u200dj wj\u2060x`);
}

// 10. Astral letters and symbols: math alphanumerics, Deseret, Gothic, Linear B, cuneiform.
line('𝐀𝐁𝐂 𝒜𝒷𝒸 𝔄𝔅 𝕬 𝖆 𝗔 𝘈 𝙰 𝚨 𝛂 𐐀𐐨 𐌰𐌱 𐀀𐀁 𒀀𒀁 𝄞 🂡');

// 11. Contractions and apostrophes at every position.
line("'s 't 're 've 'm 'll 'd 'S 'T 'RE ''s '''ll x's x'S x' 's' '  's ’s ‘t’ can't won't y'all o'clock");

// 12. Mixed random soup from every block above.
const soup = [...bases, ...pairs, ...words, ...spaces.map(cp), ...marks.map(cp), '😀', '👩‍💻', '가',
  '中', 'ش', 'ש', '٣', '\u0000', '\u0085', '\ufeff', '<|endoftext|>', '<|padding|>', '<|endoftext|',
  '  ', '   ', '\n', '.', ',', '!', '?', '"', '(', ')', '-', '—', '…'];
for (let i = 0; i < 60; i++) {
  let s = '';
  for (let k = 0; k < 25; k++) s += pick(soup);
  line(s);
}

process.stdout.write(out.join('\n') + '\n');
