#!/usr/bin/python3
"""train_tokenizer.py: a byte-level BPE (GPT-2 style) trained on the SOTU train split.

    /usr/bin/python3 models/train/train_tokenizer.py \
        --input .data/sotu/train.txt --vocab-size 4096 --out models/tokenizer.json

Vocabulary: the 256 bytes (id = byte value), then one token per merge, learned greedily by pair
frequency over the table of pre-token frequencies (GPT-2's split regex), and last the added
special token <|endoftext|> (id vocab_size - 1). Ties between pairs of equal count go to the
pair whose (left bytes, right bytes) sorts first, so the result is deterministic. Pair counts are
kept incrementally (pair -> count, pair -> words containing it, a lazy max-heap), so training
takes a minute or so on 10 MB.

The output is a Hugging Face tokenizer.json (model.type BPE, merges as "a b" strings,
pre_tokenizer ByteLevel with add_prefix_space false) that runtime/tokenizer.h loads.

The module also holds the Python encoder (class BPETokenizer), which encodes exactly like the C
tokenizer: added tokens matched verbatim first, then GPT-2's regex, GPT-2's byte<->unicode map,
and per pre-token the lowest-rank merge applied first (leftmost on ties), as GPT-2 does.
Needs Debian's python3-regex (for \\p{L} and \\p{N}).
"""

import argparse
import collections
import heapq
import json
import os
import sys
import time

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
_PAT = regex.compile(GPT2_PATTERN)


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def to_unicode(b):
    return "".join(BYTE_ENCODER[x] for x in b)


def from_unicode(s):
    return bytes(BYTE_DECODER[c] for c in s)


def pretokenize(text):
    """GPT-2's split of a str into pre-tokens (strs)."""
    return _PAT.findall(text)


# ----------------------------------------------------------------------------- training


def train_bpe(text, vocab_size, log=print):
    """Learns merges so that 256 bytes + merges + 1 special token = vocab_size tokens.
    Returns (tokens: list of bytes by id (without the special token), merges: list of (a, b)
    token-byte pairs in rank order)."""
    t0 = time.time()
    freq = collections.Counter()
    for doc in text.split("\n\n"):
        freq.update(pretokenize(doc))
    log("pre-tokens: %d distinct, %d total (%.1fs)" % (len(freq), sum(freq.values()),
                                                        time.time() - t0))
    tokens = [bytes([b]) for b in range(256)]
    tok_id = {t: i for i, t in enumerate(tokens)}
    words, counts = [], []
    for w, c in sorted(freq.items()):
        words.append(list(w.encode("utf-8")))
        counts.append(c)
    pair_count = collections.defaultdict(int)
    pair_words = collections.defaultdict(set)
    for wi, (w, c) in enumerate(zip(words, counts)):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += c
            pair_words[(a, b)].add(wi)

    def key(p):
        return (-pair_count[p], tokens[p[0]], tokens[p[1]])

    heap = [(key(p), p) for p in pair_count]
    heapq.heapify(heap)
    merges = []
    n_target = vocab_size - 1  # the special token takes the last id
    while len(tokens) < n_target and heap:
        k, p = heapq.heappop(heap)
        if pair_count.get(p, 0) <= 0:
            continue
        if k != key(p):  # stale entry (the count went down): re-queue with the current count
            heapq.heappush(heap, (key(p), p))
            continue
        a, b = p
        new_bytes = tokens[a] + tokens[b]
        if new_bytes in tok_id:  # the same bytes reached by another merge: reuse the id
            new = tok_id[new_bytes]
        else:
            new = len(tokens)
            tokens.append(new_bytes)
            tok_id[new_bytes] = new
        merges.append((tokens[a], tokens[b]))
        changed = set()
        for wi in list(pair_words[p]):
            w, c = words[wi], counts[wi]
            # remove this word's pairs, merge, add them back
            for q in zip(w, w[1:]):
                pair_count[q] -= c
                changed.add(q)
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            for q in zip(w, w[1:]):
                s = pair_words.get(q)
                if s is not None:
                    s.discard(wi)
            words[wi] = out
            for q in zip(out, out[1:]):
                pair_count[q] += c
                pair_words[q].add(wi)
                changed.add(q)
        pair_count[p] = 0
        for q in changed:
            c = pair_count.get(q, 0)
            if c <= 0:
                pair_count.pop(q, None)
                pair_words.pop(q, None)
            else:
                heapq.heappush(heap, (key(q), q))
        if len(merges) % 500 == 0:
            log("merges %d, vocab %d (%.1fs)" % (len(merges), len(tokens), time.time() - t0))
    log("done: %d merges, %d tokens + 1 special (%.1fs)" % (len(merges), len(tokens),
                                                            time.time() - t0))
    return tokens, merges


def to_hf_json(tokens, merges):
    vocab = {}
    for i, t in enumerate(tokens):
        vocab[to_unicode(t)] = i
    eot_id = len(tokens)
    vocab[EOT] = eot_id
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eot_id, "content": EOT, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": bl,
        "post_processor": dict(bl),
        "decoder": dict(bl),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": ["%s %s" % (to_unicode(a), to_unicode(b)) for a, b in merges]},
    }


# ----------------------------------------------------------------------------- encoder


class BPETokenizer:
    """Encoder/decoder for a tokenizer.json written by this module (or any GPT-2-style
    byte-level BPE tokenizer.json with added tokens), matching runtime/tokenizer.h."""

    def __init__(self, path):
        with open(path, "rb") as f:
            j = json.loads(f.read().decode("utf-8"))
        m = j["model"]
        self.vocab = {k: int(v) for k, v in m["vocab"].items()}
        self.id_to_bytes = {}
        for s, i in self.vocab.items():
            try:
                self.id_to_bytes[i] = from_unicode(s)
            except KeyError:
                self.id_to_bytes[i] = s.encode("utf-8")
        merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in m["merges"]]
        self.ranks = {mg: r for r, mg in enumerate(merges)}
        self.added = {}
        self.special = set()
        for a in j.get("added_tokens") or []:
            self.added[a["content"]] = int(a["id"])
            self.id_to_bytes[int(a["id"])] = a["content"].encode("utf-8")
            if a.get("special"):
                self.special.add(int(a["id"]))
        self.vocab_size = max(self.id_to_bytes) + 1
        self.eot_id = self.added.get(EOT, self.vocab.get(EOT))
        if self.added:
            self._added_re = regex.compile("|".join(regex.escape(t) for t in
                                                    sorted(self.added, key=len, reverse=True)))
        else:
            self._added_re = None
        self.cache = {}

    def _bpe(self, piece):
        """piece: a pre-token as byte-level unicode str -> list of token strs."""
        word = list(piece)
        if len(word) == 1:
            return word
        ranks = self.ranks
        while len(word) > 1:
            best, best_r = None, None
            for i in range(len(word) - 1):
                r = ranks.get((word[i], word[i + 1]))
                if r is not None and (best_r is None or r < best_r):
                    best, best_r = i, r
            if best is None:
                break
            a, b = word[best], word[best + 1]
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def _encode_plain(self, text, out):
        for piece in pretokenize(text):
            ids = self.cache.get(piece)
            if ids is None:
                u = to_unicode(piece.encode("utf-8"))
                ids = [self.vocab[t] for t in self._bpe(u)]
                if len(self.cache) < 500000:
                    self.cache[piece] = ids
            out.extend(ids)

    def encode(self, text, special_as_text=False):
        """str -> list of ids. Added tokens are matched verbatim first (special ones only unless
        special_as_text)."""
        out = []
        if self._added_re is None:
            self._encode_plain(text, out)
            return out
        pos = 0
        for mt in self._added_re.finditer(text):
            tid = self.added[mt.group(0)]
            if special_as_text and tid in self.special:
                continue
            self._encode_plain(text[pos:mt.start()], out)
            out.append(tid)
            pos = mt.end()
        self._encode_plain(text[pos:], out)
        return out

    def decode_bytes(self, ids):
        return b"".join(self.id_to_bytes[i] for i in ids)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def read_training_text(paths):
    """The texts of every file joined by a blank line, ending in a newline: one file reads as it
    is (if it ends in a newline), and the mixed tokenizer's 21 MB are the SOTU, Brown and mail
    train splits in that order."""
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                texts += [json.loads(line)["text"] for line in f if line.strip()]
            else:
                t = f.read()
                texts.append(t[:-1] if t.endswith("\n") else t)
    return "\n\n".join(texts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", action="append",
                    help="training text, repeatable: a .txt file is one text, a .jsonl file one "
                    "per line (its \"text\"); the texts are joined by blank lines "
                    "(default: .data/sotu/train.txt)")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--out", default="models/tokenizer.json")
    args = ap.parse_args()
    text = read_training_text(args.input or [".data/sotu/train.txt"])
    tokens, merges = train_bpe(text, args.vocab_size)
    j = to_hf_json(tokens, merges)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, args.out)
    tok = BPETokenizer(args.out)
    sample = text[:200000]
    ids = tok.encode(sample)
    assert tok.decode_bytes(ids) == sample.encode("utf-8")
    print("wrote %s: vocab %d, %d merges; %.3f bytes/token on the first 200 KB" % (
        args.out, tok.vocab_size, len(merges), len(sample.encode("utf-8")) / len(ids)))


if __name__ == "__main__":
    sys.exit(main())
