#!/usr/bin/python3
"""finetune_heads.py: adds the default model's two named classifier heads to its trained LM.

    /usr/bin/python3 models/train/finetune_heads.py --ckpt models/train/out/lm2.pth \
        --tokenizer models/tokenizer.json --out models/train/out/final2.pth

Heads (runtime/FORMAT.md "Classification heads"), each Linear(d, 2) on the mean of ln_out(x)
over a text's tokens, every text from a fresh state, encoded as the runtime does (special tokens
as text, no <|endoftext|>):
  head 0  sentiment (negative, positive): fit on .data/sentiment/fit.jsonl (amazon + yelp, 1800
          sentences), chosen on heldout.jsonl (200), scored on test.jsonl (imdb, 1000)
  head 1  spam (ham, spam): fit on .data/mail/train.jsonl, chosen on heldout.jsonl, scored on
          test.jsonl (scripts/splits/mail.js)
Training is joint, as the first edition's sentiment head was: the backbone, the LM head and both
classifiers together, on the sum of the two classification losses and the LM loss on windows of
the training mix (--mix, data_mix.py), so the one backbone keeps serving all three. Each step
takes --batch sentences, --mail-batch mails (their first --mail-tokens tokens) and --lm-batch
windows; with --weak-batch N also N texts labelled by the AFINN-165 lexicon (weak_sentiment.py:
its words alone, and sentences of the LM's training text it scores clearly), for the sentiment
head; with --token-lexicon-weight W a loss on the sentiment head's logits at the last token of
every word the lexicon scores, in the sentences and the LM windows alike (the head is linear
over a mean of tokens, so its margin is the mean of per-token margins); with
--token-score-weight W a squared-error loss pulling every token's margin to its lexicon score
(0 where no lexicon word ends), so the mean adds the lexicon up as AFINN does. After every epoch (of
the sentiment sentences) both heads are scored on their held-out texts; the epoch with the best
mean held-out accuracy is kept. The test splits are read once, by the kept weights.

Baselines on the same test texts, written here: AFINN-165 on imdb, scored as npm
sentiment@5.0.2 does (finetune_sentiment.afinn_baseline), and a multinomial Naive Bayes on the
mails (words: runs of letters, digits, $ and '; lowercase; add-alpha smoothing with alpha
chosen on the held-out mails).

Writes --out (a state_dict: LM, cls.* = sentiment, cls.1.* = spam) and --results (JSON: every
figure above); convert with
    convert.py OUT --task sentiment --labels negative,positive --task spam --labels ham,spam
"""

import argparse
import collections
import json
import math
import os
import random
import re
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import checkpoint  # noqa: E402
import data_mix  # noqa: E402
import fastops  # noqa: E402
import spikegpt_model as sm  # noqa: E402
import weak_sentiment  # noqa: E402
from finetune_sentiment import (afinn_baseline, build_model, pad_batch, pooled_features,  # noqa: E402
                                read_jsonl, train_frozen)
from train_tokenizer import BPETokenizer  # noqa: E402

sm.lif_multistep = fastops.lif_multistep_fast

HEADS = [("sentiment", ["negative", "positive"]), ("spam", ["ham", "spam"])]


def rel(p):
    return os.path.join(ROOT, p)


# ----------------------------------------------------------------------------- Naive Bayes

_NB_WORD = re.compile(r"[a-z0-9$']+")


def nb_words(text):
    return _NB_WORD.findall(text.lower())


def naive_bayes(train, heldout, test, alphas=(0.01, 0.03, 0.1, 0.3, 1.0)):
    """Multinomial Naive Bayes on word counts, alpha chosen on heldout; the test accuracy of
    that alpha. Items: {"text", "label"}."""
    counts = [collections.Counter(), collections.Counter()]
    docs = [0, 0]
    for it in train:
        counts[it["label"]].update(nb_words(it["text"]))
        docs[it["label"]] += 1
    vocab = set(counts[0]) | set(counts[1])
    totals = [sum(c.values()) for c in counts]
    prior = [math.log(d / sum(docs)) for d in docs]

    def accuracy(items, alpha):
        right = 0
        for it in items:
            score = []
            for c in (0, 1):
                denom = math.log(totals[c] + alpha * len(vocab))
                s = prior[c]
                for w in nb_words(it["text"]):
                    if w in vocab:
                        s += math.log(counts[c][w] + alpha) - denom
                score.append(s)
            right += int(score[1] > score[0]) == it["label"]
        return right / len(items)

    by_alpha = {a: accuracy(heldout, a) for a in alphas}
    best = max(alphas, key=lambda a: (by_alpha[a], -a))
    return {"heldout_by_alpha": by_alpha, "alpha": best, "test": accuracy(test, best),
            "vocabulary": len(vocab), "train_mails": len(train)}


# ----------------------------------------------------------------------------- the model


def mean_pool(xo, mask):
    """The mean of ln_out (B, T, d) over each text's own tokens (mask (B, T))."""
    m = mask.unsqueeze(-1)
    return (xo * m).sum(1) / m.sum(1)


def take_batch(order, n_items, k, rng):
    """The next k indices of a shuffled pass over n_items, refilled with a new pass when short;
    returns (the batch, what is left of order)."""
    if len(order) < k:
        o = list(range(n_items))
        rng.shuffle(o)
        order = order + o
    return order[:k], order[k:]


class TwoHeads(nn.Module):
    """The SpikeGPT backbone with the sentiment head as its cls (head 0) and a second Linear
    for spam (head 1, saved as cls.1.*)."""

    def __init__(self, sd):
        super().__init__()
        self.lm = build_model({k: v for k, v in sd.items() if not k.startswith("cls.1.")},
                              n_classes=2)
        self.spam = nn.Linear(self.lm.config.n_embd, 2)
        if "cls.1.weight" in sd:
            with torch.no_grad():
                self.spam.weight.copy_(sd["cls.1.weight"])
                self.spam.bias.copy_(sd["cls.1.bias"])

    def pooled(self, idx, mask):
        return mean_pool(self.lm(idx, wkv=fastops.wkv_fused)["ln_out"], mask)

    def head(self, i):
        return self.lm.cls if i == 0 else self.spam

    def state_dict_for_convert(self):
        sd = {k: v.detach().clone() for k, v in self.lm.state_dict().items()}
        sd["cls.1.weight"] = self.spam.weight.detach().clone()
        sd["cls.1.bias"] = self.spam.bias.detach().clone()
        return sd


def head_accuracy(model, head, seqs, labels, batch=16):
    """Accuracy of one head over whole texts (sorted by length to pad little)."""
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    right = 0
    with torch.no_grad():
        for s in range(0, len(order), batch):
            ids = order[s:s + batch]
            idx, mask = pad_batch([seqs[i] for i in ids])
            pred = model.head(head)(model.pooled(idx, mask)).argmax(-1)
            right += int((pred == torch.tensor([labels[i] for i in ids])).sum())
    model.train()
    return right / len(seqs)


def token_lexicon_loss(cls, marked):
    """Cross-entropy of the sentiment head on the features of every lexicon-marked token:
    marked is [(one text's ln_out (T, d), its tokens, their token_marks)]."""
    want, feats = [], []
    for xo, _, marks in marked:
        for t, score in marks:
            feats.append(xo[t])
            want.append(int(score > 0))
    if not feats:
        return torch.zeros(())
    return F.cross_entropy(cls(torch.stack(feats)), torch.tensor(want))


def token_score_loss(cls, marked):
    """Squared error of the sentiment head's margin (positive minus negative logit) at every
    token against its lexicon score (0 where no lexicon word ends): with the head linear over a
    mean of tokens, a text's margin becomes its mean lexicon score, as AFINN sums it, plus
    what the context teaches."""
    errs = []
    for xo, seq, marks in marked:
        lg = cls(xo[:len(seq)])
        want = torch.zeros(len(seq))
        for t, score in marks:
            want[t] = float(score)
        errs.append((lg[:, 1] - lg[:, 0] - want) ** 2)
    return torch.cat(errs).mean()


def refit_spam_head(model, M, seed):
    """Fits the spam head alone (logistic regression, weight decay chosen on the held-out mails)
    on the backbone's pooled features of the whole training mails, which the joint fine-tune
    only sees cut short and a few per step; keeps it if it does at least as well held out as the
    joint head."""
    t0 = time.time()
    joint = head_accuracy(model, 1, *M["heldout"])
    ftr = pooled_features(model.lm, M["train"][0], batch=8)
    fho = pooled_features(model.lm, M["heldout"][0], batch=8)
    saved = (model.spam.weight.detach().clone(), model.spam.bias.detach().clone())
    scores, wd = train_frozen(types.SimpleNamespace(cls=model.spam), ftr, M["train"][1], fho,
                              M["heldout"][1], seed)
    refit = max(scores.values())
    kept = refit >= joint
    if not kept:
        with torch.no_grad():
            model.spam.weight.copy_(saved[0])
            model.spam.bias.copy_(saved[1])
    print("spam head refit on whole mails: held out %.4f (weight decay %g) against the joint "
          "head's %.4f: %s (%.1f min)" % (refit, wd, joint, "kept" if kept else "not kept",
                                          (time.time() - t0) / 60), flush=True)
    model.train()
    return {"heldout_joint": joint, "heldout_by_weight_decay": scores, "weight_decay": wd,
            "kept": kept}


def lm_valid_losses(model, vwins, batch=8):
    model.eval()
    out = {}
    with torch.no_grad():
        for name, w in vwins.items():
            tot = 0.0
            for i in range(0, len(w), batch):
                b = w[i:i + batch]
                lg = model.lm(b[:, :-1], wkv=fastops.wkv_fused)["logits"]
                tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1),
                                       reduction="sum").item()
            out[name] = tot / (len(w) * (w.shape[1] - 1))
    model.train()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--ckpt", required=True,
                    help="the trained LM (train.py --out, or a training checkpoint)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--results", help="JSON of every figure (default: heads.json beside --out)")
    ap.add_argument("--tokenizer", default=rel("models/tokenizer.json"))
    ap.add_argument("--data-dir", default=os.environ.get("QSLM_DATA_DIR", rel(".data")))
    ap.add_argument("--mix", default="sotu=0.45,brown=0.25,mail=0.3")
    ap.add_argument("--epochs", type=int, default=6, help="passes over the sentiment sentences")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mail-batch", type=int, default=4)
    ap.add_argument("--mail-tokens", type=int, default=512)
    ap.add_argument("--lm-batch", type=int, default=4)
    ap.add_argument("--lm-weight", type=float, default=1.0)
    ap.add_argument("--weak-batch", type=int, default=0,
                    help="lexicon-labelled texts per step for the sentiment head "
                    "(weak_sentiment.py; 0: none)")
    ap.add_argument("--weak-weight", type=float, default=1.0)
    ap.add_argument("--token-lexicon-weight", type=float, default=0.0,
                    help="weight of a loss on the sentiment head's logits at every lexicon word's "
                    "last token, in the sentences and the LM windows (weak_sentiment.token_marks; "
                    "0: none)")
    ap.add_argument("--token-score-weight", type=float, default=0.0,
                    help="weight of a squared-error loss pulling every token's sentiment margin to "
                    "its lexicon score (0 where no lexicon word ends), in the sentences and the LM "
                    "windows (0: none)")
    ap.add_argument("--weak-sources", default="words,sentences",
                    help="which lexicon-labelled texts: words, sentences or both")
    ap.add_argument("--spam-weight", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4, help="backbone + LM head")
    ap.add_argument("--cls-lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--select-mails", type=int, default=300,
                    help="held-out mails scored after each epoch, spread over the split (all of them "
                    "at the end)")
    ap.add_argument("--spam-refit", action="store_true",
                    help="after the joint fine-tune, also fit the spam head alone on the kept "
                    "backbone's features of the whole training mails; the held-out mails choose "
                    "between it and the jointly trained head")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0,
                    help="only N texts of every split, spread over it: a check that the script "
                    "runs, not a result")
    args = ap.parse_args()
    results_path = args.results or os.path.join(os.path.dirname(args.out), "heads.json")

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.time()
    dd = lambda p: os.path.join(args.data_dir, p)  # noqa: E731

    tok = BPETokenizer(args.tokenizer)
    enc = lambda items, cap=None: [  # noqa: E731
        (tok.encode(it["text"], special_as_text=True) or [tok.eot_id])[:cap] for it in items]
    cut = lambda items: (items[::max(1, len(items) // args.limit)][:args.limit]  # noqa: E731
                         if args.limit else items)
    sent = {s: cut(read_jsonl(dd("sentiment/%s.jsonl" % s))) for s in ("fit", "heldout", "test")}
    mail = {s: cut(read_jsonl(dd("mail/%s.jsonl" % s))) for s in ("train", "heldout", "test")}
    S = {s: (enc(v), [it["label"] for it in v]) for s, v in sent.items()}
    M = {s: (enc(v), [it["label"] for it in v]) for s, v in mail.items()}
    Mtrain_cut = [x[:args.mail_tokens] for x in M["train"][0]]
    print("texts: sentiment %s; mail %s (%.1fs)" % (
        {s: len(v[0]) for s, v in S.items()}, {s: len(v[0]) for s, v in M.items()},
        time.time() - t_start), flush=True)

    results = {"seed": args.seed, "args": vars(args), "heads": HEADS}
    results["afinn"] = afinn_baseline(sent["test"], dd("sentiment/afinn-165.json"),
                                      dd("pkg/sentiment/languages/en/negators.json"))
    results["naive_bayes"] = naive_bayes(mail["train"], mail["heldout"], mail["test"])
    print("baselines: AFINN-165 on imdb %.4f (ties positive); Naive Bayes on the test mails "
          "%.4f (alpha %g)" % (results["afinn"]["accuracy_ties_positive"],
                               results["naive_bayes"]["test"], results["naive_bayes"]["alpha"]),
          flush=True)

    weak = []
    labels, negators = weak_sentiment.load_lexicon(args.data_dir)
    marks = lambda seq: weak_sentiment.token_marks(seq, tok.id_to_bytes, labels, negators)  # noqa: E731
    if args.weak_batch:
        sources = set(args.weak_sources.split(","))
        if not sources <= {"words", "sentences"}:
            ap.error("--weak-sources: expected words, sentences or both, got %r" % args.weak_sources)
        if "words" in sources:
            weak += weak_sentiment.lexicon_words(labels)
        if "sentences" in sources:
            weak += weak_sentiment.lexicon_sentences(args.data_dir, labels, negators, seed=args.seed)
        weak = cut(weak)
        results["weak"] = {"sources": sorted(sources), "texts": len(weak),
                           "positive": sum(it["label"] for it in weak)}
        print("lexicon-labelled texts: %d (%d positive)" % (
            len(weak), results["weak"]["positive"]), flush=True)
    W = (enc(weak, args.ctx), [it["label"] for it in weak])

    mix = data_mix.Mix(tok, args.tokenizer, args.data_dir, data_mix.parse_mix(args.mix),
                       os.path.dirname(args.ckpt), log=lambda m: print(m, flush=True))
    vwins = {n: mix.valid_windows(n, 16 if n == "sotu" else 8, args.ctx) for n in mix.train}
    lm_sd = torch.load(args.ckpt, map_location="cpu")
    if lm_sd.get("format") == checkpoint.FORMAT:  # a training checkpoint: its model
        lm_sd = lm_sd["model"]
    model = TwoHeads(lm_sd)
    lm0 = lm_valid_losses(model, vwins)
    print("LM valid loss before: %s" % lm0, flush=True)
    results["lm_valid_before"] = lm0

    heads = [p for n, p in model.named_parameters() if n.startswith(("lm.cls.", "spam."))]
    backbone = [p for n, p in model.named_parameters() if not n.startswith(("lm.cls.", "spam."))]
    opt = torch.optim.Adam([{"params": backbone, "lr": args.lr},
                            {"params": heads, "lr": args.cls_lr}], betas=(0.9, 0.99))
    Xs, ys = S["fit"]
    steps_per_epoch = math.ceil(len(Xs) / args.batch)
    total = args.epochs * steps_per_epoch
    rng = random.Random(args.seed + 2)
    mail_order, weak_order = [], []
    # spread over the held-out split, which is in group order (easy ham first, spam last)
    sel = np.linspace(0, len(M["heldout"][0]) - 1, min(args.select_mails, len(M["heldout"][0])))
    sel = sorted(set(int(round(i)) for i in sel))
    sel_mails = ([M["heldout"][0][i] for i in sel], [M["heldout"][1][i] for i in sel])
    best, history = None, []
    step = 0
    t0 = time.time()
    model.train()
    for epoch in range(1, args.epochs + 1):
        order = list(range(len(Xs)))
        rng.shuffle(order)
        for b0 in range(0, len(order), args.batch):
            ids = order[b0:b0 + args.batch]
            idx, mask = pad_batch([Xs[i] for i in ids])
            xo = model.lm(idx, wkv=fastops.wkv_fused)["ln_out"]
            loss_s = F.cross_entropy(model.lm.cls(mean_pool(xo, mask)),
                                     torch.tensor([ys[i] for i in ids]))
            mids, mail_order = take_batch(mail_order, len(Mtrain_cut), args.mail_batch, rng)
            idx, mask = pad_batch([Mtrain_cut[i] for i in mids])
            loss_m = F.cross_entropy(model.spam(model.pooled(idx, mask)),
                                     torch.tensor([M["train"][1][i] for i in mids]))
            if args.weak_batch:
                wids, weak_order = take_batch(weak_order, len(W[0]), args.weak_batch, rng)
                idx, mask = pad_batch([W[0][i] for i in wids])
                loss_w = F.cross_entropy(model.lm.cls(model.pooled(idx, mask)),
                                         torch.tensor([W[1][i] for i in wids]))
                loss_s = loss_s + args.weak_weight * loss_w
            x, y = mix.batch(args.seed + 1, step, args.lm_batch, args.ctx)
            out = model.lm(x, wkv=fastops.wkv_fused)
            lg = out["logits"]
            loss_l = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1))
            if args.token_lexicon_weight or args.token_score_weight:
                # each text's lexicon marks found once, for either token loss
                marked = [(feats[b], seq, marks(seq))
                          for feats, seqs in ((xo, [Xs[i] for i in ids]), (out["ln_out"], x.tolist()))
                          for b, seq in enumerate(seqs)]
                if args.token_lexicon_weight:
                    loss_s = loss_s + args.token_lexicon_weight * token_lexicon_loss(
                        model.lm.cls, marked)
                if args.token_score_weight:
                    loss_s = loss_s + args.token_score_weight * token_score_loss(
                        model.lm.cls, marked)
            loss = loss_s + args.spam_weight * loss_m + args.lm_weight * loss_l
            f = 0.5 * (1 + math.cos(math.pi * step / max(total, 1))) * min(1.0, (step + 1) / args.warmup)
            opt.param_groups[0]["lr"] = args.lr * f
            opt.param_groups[1]["lr"] = args.cls_lr * f
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 10 == 0 or step == 1:
                print("step %d/%d (epoch %d): sentiment %.4f spam %.4f lm %.4f (%.1f min)" % (
                    step, total, epoch, loss_s.item(), loss_m.item(), loss_l.item(),
                    (time.time() - t0) / 60), flush=True)
        acc_s = head_accuracy(model, 0, *S["heldout"])
        acc_m = head_accuracy(model, 1, *sel_mails)
        history.append({"epoch": epoch, "sentiment_heldout": acc_s, "spam_heldout": acc_m,
                        "minutes": (time.time() - t0) / 60})
        print("epoch %d: held-out sentiment %.4f, spam %.4f (%d mails)" % (
            epoch, acc_s, acc_m, len(sel_mails[0])), flush=True)
        if best is None or (acc_s + acc_m) / 2 > best[0]:
            best = ((acc_s + acc_m) / 2, epoch, model.state_dict_for_convert())
    results["epochs"] = history
    results["kept_epoch"] = best[1]
    sd = best[2]
    model = TwoHeads(sd)
    if args.spam_refit:
        results["spam_refit"] = refit_spam_head(model, M, args.seed)
        sd = model.state_dict_for_convert()
    final = {"sentiment": {"fit": head_accuracy(model, 0, *S["fit"]),
                           "heldout": head_accuracy(model, 0, *S["heldout"]),
                           "test_imdb": head_accuracy(model, 0, *S["test"])},
             "spam": {"heldout": head_accuracy(model, 1, *M["heldout"]),
                      "test": head_accuracy(model, 1, *M["test"])},
             "lm_valid_after": lm_valid_losses(model, vwins)}
    results.update(final)
    results["minutes"] = (time.time() - t_start) / 60
    torch.save(sd, args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)
    print("kept epoch %d: sentiment imdb %.4f (AFINN %.4f), spam test %.4f (Naive Bayes %.4f); "
          "LM valid %s; saved %s, %s" % (
              best[1], final["sentiment"]["test_imdb"], results["afinn"]["accuracy_ties_positive"],
              final["spam"]["test"], results["naive_bayes"]["test"], final["lm_valid_after"],
              args.out, results_path), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
