#!/usr/bin/python3
"""finetune_sentiment.py: adds the sentiment classifier head to the trained SpikeGPT LM.

    /usr/bin/python3 models/train/finetune_sentiment.py --seed 1234 --mode joint --epochs 6 --max-minutes 10

Head: SpikeGPT's SST-2 style classifier, cls = Linear(d, 2) on the mean of ln_out(x) over the
sentence's tokens (each sentence from a fresh state, encoded as qslm-eval does: special tokens
as text, no <|endoftext|>). Data: .data/sentiment/train.jsonl (amazon + yelp, 2000 sentences;
a seeded 10% is held out to choose the mode), evaluated on test.jsonl (imdb, 1000 sentences).

Two modes, both run, the one with the better held-out accuracy kept (--mode forces one):
  frozen  the backbone and the LM head are untouched; only cls is trained (logistic regression on
          the pooled features, weight decay picked on the held-out 10%). The LM stays exactly
          as trained.
  joint   backbone + cls tuned together on a joint loss: classification cross-entropy plus the
          LM loss on SOTU train windows (weight --lm-weight), so the shared backbone keeps its
          language model; the LM's validation loss before and after is reported.
One model file carries both heads, so the backbone has to serve both tasks.

Also computes the AFINN-165 lexicon baseline on the same imdb sentences, scored as npm
`sentiment@5.0.2` does (lib/tokenize.js: lowercase, newlines and the characters
.,/#!?$%^&*;:{}=_`"~() become spaces, runs of whitespace collapse, split on ' '; sum of the
AFINN scores of the tokens, a score negated when the previous token is one of its negators
("not", "don't", ...)). Its own benchmark (test/benchmark/validate.js) counts score >= 0 as
positive; we report that rule (ties -> positive) and score > 0 (ties -> negative).

Writes models/train/out/spikegpt-sotu-final.pth (LM + cls) and models/train/out/sentiment.json.
The head's task and class names (TASK, LABELS below: class 0 negative, 1 positive, the data's
"label" values) go into sentiment.json and, through convert.py --task/--labels, into the model
file's metadata (runtime/FORMAT.md "Classification heads").
"""

import argparse
import json
import math
import os
import random
import re
import sys
import time

import numpy as np
import torch

TASK = "sentiment"
LABELS = ["negative", "positive"]  # index = the data's "label" (1 = positive, make-splits.js)
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import fastops  # noqa: E402
import spikegpt_model as sm  # noqa: E402
from train_tokenizer import BPETokenizer  # noqa: E402
from train import load_tokens  # noqa: E402

sm.lif_multistep = fastops.lif_multistep_fast


def rel(p):
    return os.path.join(ROOT, p)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


# ----------------------------------------------------------------------------- AFINN baseline


_NPM_PUNCT = re.compile(r"""[.,/#!?$%\^&*;:{}=_`"~()]""")
_JS_WS = re.compile(r"[\s\ufeff]{2,}")  # JS \s also matches U+FEFF


def npm_tokenize(s):
    s = s.lower().replace("\n", " ")
    s = _NPM_PUNCT.sub(" ", s)
    s = _JS_WS.sub(" ", s)
    return s.strip(" \t\n\r\x0b\x0c\ufeff\xa0").split(" ")


def afinn_score(text, labels, negators):
    toks = npm_tokenize(text)
    score = 0
    for i, t in enumerate(toks):
        if t in labels:
            v = labels[t]
            if i > 0 and toks[i - 1] in negators:
                v = -v
            score += v
    return score


def afinn_baseline(items, labels_path, negators_path):
    with open(labels_path, encoding="utf-8") as f:
        labels = json.load(f)
    negators = {}
    if negators_path and os.path.exists(negators_path):
        with open(negators_path, encoding="utf-8") as f:
            negators = json.load(f)
    scores = [afinn_score(it["text"], labels, negators) for it in items]
    y = [it["label"] for it in items]
    n = len(items)
    ge = sum((s >= 0) == (l == 1) for s, l in zip(scores, y)) / n
    gt = sum((s > 0) == (l == 1) for s, l in zip(scores, y)) / n
    scores_nn = [afinn_score(it["text"], labels, {}) for it in items]
    gt_nn = sum((s > 0) == (l == 1) for s, l in zip(scores_nn, y)) / n
    return {"accuracy_ties_positive": ge, "accuracy_ties_negative": gt,
            "accuracy_ties_negative_no_negation": gt_nn,
            "ties": sum(s == 0 for s in scores), "n": n,
            "rule": "npm sentiment@5.0.2 tokenize + AFINN-165 + negators; ties_positive = "
                    "score >= 0 is positive (the package's test/benchmark/validate.js)"}


# ----------------------------------------------------------------------------- model helpers


def pad_batch(seqs):
    L = max(len(s) for s in seqs)
    idx = torch.zeros(len(seqs), L, dtype=torch.long)
    mask = torch.zeros(len(seqs), L)
    for i, s in enumerate(seqs):
        idx[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return idx, mask


def pooled_features(model, seqs, batch=64):
    """Mean of ln_out over each sequence's tokens (fresh state each), no grad."""
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    feats = torch.zeros(len(seqs), model.config.n_embd)
    with torch.no_grad():
        for s in range(0, len(order), batch):
            ids = order[s:s + batch]
            idx, mask = pad_batch([seqs[i] for i in ids])
            xo = model(idx, wkv=fastops.wkv_fused)["ln_out"]
            m = mask.unsqueeze(-1)
            feats[ids] = (xo * m).sum(1) / m.sum(1)
    return feats


def accuracy(model, seqs, labels, batch=64):
    f = pooled_features(model, seqs, batch)
    with torch.no_grad():
        pred = model.cls(f).argmax(-1)
    return (pred == torch.tensor(labels)).float().mean().item()


def lm_valid_loss(model, vwin, batch=8):
    model.eval()
    tot = 0.0
    with torch.no_grad():
        for i in range(0, len(vwin), batch):
            w = vwin[i:i + batch]
            lg = model(w[:, :-1], wkv=fastops.wkv_fused)["logits"]
            tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), w[:, 1:].reshape(-1),
                                   reduction="sum").item()
    return tot / (vwin.shape[0] * (vwin.shape[1] - 1))


def build_model(sd, n_classes=2):
    d = sd["emb.weight"].shape[1]
    cfg = sm.SpikeGPTConfig(n_layer=1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks.")),
                            n_embd=d, vocab_size=sd["emb.weight"].shape[0],
                            n_ffn=sd["blocks.0.ffn.key.weight"].shape[0], n_classes=n_classes)
    model = sm.SpikeGPT(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("cls.") for k in missing), missing
    return model


def train_frozen(model, ftr, ytr, fho, yho, seed, epochs=300, lr=0.05,
                 wds=(0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)):
    """Logistic regression on fixed features (full batch Adam on standardized features, the
    standardization folded into cls afterwards), its weight decay chosen on the held-out
    sentences. Returns {wd: held-out accuracy}."""
    mu, sd = ftr.mean(0), ftr.std(0).clamp_min(1e-6)
    z = lambda f: (f - mu) / sd
    y = torch.tensor(ytr)
    best, scores = None, {}
    for wd in wds:
        g = torch.Generator().manual_seed(seed)
        cls = nn.Linear(ftr.shape[1], 2)
        with torch.no_grad():
            cls.weight.normal_(0, 0.01, generator=g)
            cls.bias.zero_()
        opt = torch.optim.Adam(cls.parameters(), lr=lr, weight_decay=wd)
        for _ in range(epochs):
            loss = F.cross_entropy(cls(z(ftr)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (cls(z(fho)).argmax(-1) == torch.tensor(yho)).float().mean().item()
        scores[wd] = acc
        if best is None or acc > best[0]:
            best = (acc, wd, cls.weight.detach() / sd, cls.bias.detach() - (cls.weight.detach() * mu / sd).sum(1))
    with torch.no_grad():
        model.cls.weight.copy_(best[2])
        model.cls.bias.copy_(best[3])
    return scores, best[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--ckpt", default=rel("models/train/out/spikegpt-sotu.pth"))
    ap.add_argument("--out", default=rel("models/train/out/spikegpt-sotu-final.pth"))
    ap.add_argument("--results", default=rel("models/train/out/sentiment.json"))
    ap.add_argument("--tokenizer", default=rel("models/tokenizer.json"))
    ap.add_argument("--mode", choices=("auto", "frozen", "joint"), default="auto")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="budget of the joint run")
    ap.add_argument("--epochs", type=float, default=6.0, help="joint: passes over the data")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lm-batch", type=int, default=4)
    ap.add_argument("--lm-weight", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4, help="joint: backbone + LM head")
    ap.add_argument("--cls-lr", type=float, default=2e-3)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=20, help="joint: warmup steps")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.time()

    tok = BPETokenizer(args.tokenizer)
    train = read_jsonl(rel(".data/sentiment/train.jsonl"))
    test = read_jsonl(rel(".data/sentiment/test.jsonl"))
    enc = lambda items: [tok.encode(it["text"], special_as_text=True) or [tok.eot_id]
                         for it in items]
    perm = list(range(len(train)))
    random.Random(args.seed).shuffle(perm)
    n_hold = len(train) // 10
    hold_i, tr_i = perm[:n_hold], perm[n_hold:]
    Xtr = enc([train[i] for i in tr_i])
    ytr = [train[i]["label"] for i in tr_i]
    Xho = enc([train[i] for i in hold_i])
    yho = [train[i]["label"] for i in hold_i]
    Xte = enc(test)
    yte = [it["label"] for it in test]

    results = {"seed": args.seed, "train_sentences": len(tr_i), "held_out_sentences": n_hold,
               "test_sentences": len(test)}
    results["afinn"] = afinn_baseline(test, rel(".data/sentiment/afinn-165.json"),
                                      rel(".data/pkg/sentiment/languages/en/negators.json"))
    print("AFINN-165 baseline on imdb: %s" % json.dumps(results["afinn"]), flush=True)

    sd = torch.load(args.ckpt, map_location="cpu")
    outdir = os.path.dirname(args.ckpt)
    valid = load_tokens(tok, rel(".data/sotu/valid.txt"), os.path.join(outdir, "valid_ids.npy"))
    nv = 16
    vwin = torch.from_numpy(valid[: nv * (args.ctx + 1)].astype(np.int64)).view(nv, args.ctx + 1)

    # ---- frozen
    model = build_model(sd)
    lm0 = lm_valid_loss(model, vwin)
    print("LM valid loss of the checkpoint: %.4f" % lm0, flush=True)
    ftr = pooled_features(model, Xtr)
    fho = pooled_features(model, Xho)
    fte = pooled_features(model, Xte)
    wd_scores, wd = train_frozen(model, ftr, ytr, fho, yho, args.seed)
    print("frozen: held-out accuracy by weight decay %s -> %g" % (wd_scores, wd), flush=True)
    with torch.no_grad():
        fr = {"train": (model.cls(ftr).argmax(-1) == torch.tensor(ytr)).float().mean().item(),
              "held_out": (model.cls(fho).argmax(-1) == torch.tensor(yho)).float().mean().item(),
              "test_imdb": (model.cls(fte).argmax(-1) == torch.tensor(yte)).float().mean().item(),
              "lm_valid_loss": lm0, "weight_decay": wd}
    results["frozen"] = fr
    print("frozen: %s" % json.dumps(fr), flush=True)
    frozen_sd = {k: v.clone() for k, v in model.state_dict().items()}

    # ---- joint
    if args.mode in ("auto", "joint"):
        model = build_model(sd)
        with torch.no_grad():  # start the head from the frozen solution
            model.cls.weight.copy_(frozen_sd["cls.weight"])
            model.cls.bias.copy_(frozen_sd["cls.bias"])
        train_t = torch.from_numpy(load_tokens(tok, rel(".data/sotu/train.txt"), os.path.join(
            outdir, "train_ids.npy")).astype(np.int64))
        gen = torch.Generator().manual_seed(args.seed + 1)
        rng = random.Random(args.seed + 2)
        backbone = [p for n, p in model.named_parameters() if not n.startswith("cls.")]
        opt = torch.optim.Adam([{"params": backbone, "lr": args.lr},
                                {"params": model.cls.parameters(), "lr": args.cls_lr}],
                               betas=(0.9, 0.99))
        steps_per_epoch = math.ceil(len(Xtr) / args.batch)
        total_steps = int(args.epochs * steps_per_epoch)
        budget = args.max_minutes * 60
        t0 = time.time()
        step = 0
        order = []
        model.train()
        while step < total_steps and time.time() - t0 < budget:
            if len(order) < args.batch:
                o = list(range(len(Xtr)))
                rng.shuffle(o)
                order += o
            ids, order = order[:args.batch], order[args.batch:]
            idx, mask = pad_batch([Xtr[i] for i in ids])
            out = model(idx, cls_mask=mask, wkv=fastops.wkv_fused)
            loss_c = F.cross_entropy(out["cls_logits"], torch.tensor([ytr[i] for i in ids]))
            loss = loss_c
            loss_l = torch.zeros(())
            if args.lm_weight > 0:
                st = torch.randint(0, len(train_t) - args.ctx - 1, (args.lm_batch,), generator=gen)
                b = torch.stack([train_t[s:s + args.ctx + 1] for s in st.tolist()])
                lg = model(b[:, :-1], wkv=fastops.wkv_fused)["logits"]
                loss_l = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1))
                loss = loss + args.lm_weight * loss_l
            # cosine decay of both learning rates over the planned steps
            f = 0.5 * (1 + math.cos(math.pi * step / max(total_steps, 1)))
            f *= min(1.0, (step + 1) / args.warmup)
            opt.param_groups[0]["lr"] = args.lr * f
            opt.param_groups[1]["lr"] = args.cls_lr * f
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 10 == 0 or step == 1:
                print("joint step %d/%d: cls loss %.4f lm loss %.4f (%.1f min)" % (
                    step, total_steps, loss_c.item(), loss_l.item(), (time.time() - t0) / 60),
                    flush=True)
        jt = {"steps": step, "epochs": step / steps_per_epoch,
              "minutes": (time.time() - t0) / 60,
              "train": accuracy(model, Xtr, ytr), "held_out": accuracy(model, Xho, yho),
              "test_imdb": accuracy(model, Xte, yte), "lm_valid_loss": lm_valid_loss(model, vwin)}
        results["joint"] = jt
        print("joint: %s" % json.dumps(jt), flush=True)
        joint_sd = {k: v.clone() for k, v in model.state_dict().items()}

    if args.mode == "frozen" or (args.mode == "auto" and results["frozen"]["held_out"] >=
                                 results["joint"]["held_out"]):
        chosen, final_sd = "frozen", frozen_sd
    else:
        chosen, final_sd = "joint", joint_sd
    results["chosen"] = chosen
    results["task"], results["labels"] = TASK, LABELS
    results["chosen_by"] = "held-out accuracy (10% of amazon+yelp)" if args.mode == "auto" else "--mode"
    results["minutes"] = (time.time() - t_start) / 60
    torch.save(final_sd, args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=1)
    print("chosen: %s; imdb accuracy %.4f (AFINN %.4f); saved %s" % (
        chosen, results[chosen]["test_imdb"], results["afinn"]["accuracy_ties_positive"],
        args.out), flush=True)
    print("convert it with: models/train/convert.py %s --task %s --labels %s ..." % (
        args.out, TASK, ",".join(LABELS)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
