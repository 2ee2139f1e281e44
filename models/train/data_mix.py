"""data_mix.py: the language model's training text, drawn from several corpora by weight.

A source is a named corpus with a train and a validation split (.data/<corpus>/): "sotu" (State of the
Union addresses), "brown" (the Brown corpus), "mail" (the SpamAssassin mails of the train split,
ham and spam alike, without their labels). Each split's documents are encoded one by one, each
preceded by <|endoftext|>, into one int32 array cached next to the checkpoint (keyed on the
split's and the tokenizer's modification times).

Batches are a function of (seed, step) alone: step s draws from a generator seeded with
seed * 1000003 + s, first which source each row comes from (by the mix's weights), then where in
that source its window starts. So a run stopped and resumed at any step sees exactly the windows
an uninterrupted run would.
"""

import hashlib
import json
import os

import numpy as np
import torch

SOURCES = {
    # name: (train file, valid file, kind)
    "sotu": ("sotu/train.txt", "sotu/valid.txt", "text"),
    "brown": ("brown/train.txt", "brown/valid.txt", "text"),
    "mail": ("mail/train.jsonl", "mail/heldout.jsonl", "jsonl"),
}


def parse_mix(spec):
    """"sotu=0.5,brown=0.25,mail=0.25" -> [(name, weight)], weights normalised to sum 1."""
    out = []
    for part in spec.split(","):
        name, sep, w = part.partition("=")
        name = name.strip()
        if name not in SOURCES:
            raise ValueError("--mix: unknown corpus '%s' (known: %s)" % (name, ", ".join(SOURCES)))
        try:
            weight = float(w) if sep else 1.0
        except ValueError:
            raise ValueError("--mix: weight of '%s' is not a number: '%s'" % (name, w)) from None
        if not weight > 0:
            raise ValueError("--mix: weight of '%s' must be > 0" % name)
        if any(n == name for n, _ in out):
            raise ValueError("--mix: '%s' given twice" % name)
        out.append((name, weight))
    total = sum(w for _, w in out)
    return [(n, w / total) for n, w in out]


def documents(path, kind):
    """The split's documents: text files hold them separated by an empty line, JSON Lines files
    one per line in "text"."""
    with open(path, encoding="utf-8") as f:
        if kind == "jsonl":
            return [json.loads(line)["text"] for line in f if line.strip()]
        return [d.strip("\n") for d in f.read().split("\n\n") if d.strip()]


def encode_split(tok, tok_path, path, kind, cache):
    """int32 token ids of a split, each document preceded by <|endoftext|>; cached (the cache's
    name carries the tokenizer's hash, its time must be after the split's)."""
    if cache and os.path.exists(cache) and os.path.getmtime(cache) > max(
            os.path.getmtime(path), os.path.getmtime(tok_path)):
        return np.load(cache)
    ids = []
    for d in documents(path, kind):
        ids.append(tok.eot_id)
        ids.extend(tok.encode(d))
    arr = np.array(ids, dtype=np.int32)
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        np.save(cache + ".tmp.npy", arr)
        os.replace(cache + ".tmp.npy", cache)
    return arr


class Mix:
    """The encoded corpora of a mix and the deterministic batch of any step."""

    def __init__(self, tok, tok_path, data_dir, mix, cache_dir, log=print):
        self.mix = mix
        with open(tok_path, "rb") as f:
            tag = hashlib.sha256(f.read()).hexdigest()[:12]
        self.train, self.valid = {}, {}
        for name, _ in mix:
            tr, va, kind = SOURCES[name]
            self.train[name] = torch.from_numpy(encode_split(
                tok, tok_path, os.path.join(data_dir, tr), kind,
                os.path.join(cache_dir, "%s_train_%s.npy" % (name, tag))).astype(np.int64))
            self.valid[name] = encode_split(tok, tok_path, os.path.join(data_dir, va), kind,
                                            os.path.join(cache_dir, "%s_valid_%s.npy" % (name, tag)))
            log("tokens: %s train %d, valid %d" % (name, len(self.train[name]),
                                                   len(self.valid[name])))
        self.weights = torch.tensor([w for _, w in mix], dtype=torch.float64)

    def batch(self, seed, step, rows, ctx):
        """Inputs and targets (rows x ctx) of training step `step`."""
        g = torch.Generator().manual_seed(seed * 1000003 + step)
        which = torch.multinomial(self.weights, rows, replacement=True, generator=g).tolist()
        windows = []
        for i in which:
            src = self.train[self.mix[i][0]]
            s = int(torch.randint(0, len(src) - ctx - 1, (1,), generator=g))
            windows.append(src[s:s + ctx + 1])
        b = torch.stack(windows)
        return b[:, :-1], b[:, 1:]

    def valid_windows(self, name, n, ctx):
        """The first n consecutive windows of ctx + 1 tokens of a source's valid split."""
        v = self.valid[name]
        n = min(n, (len(v) - 1) // (ctx + 1))
        return torch.from_numpy(v[:n * (ctx + 1)].astype(np.int64)).view(n, ctx + 1)
