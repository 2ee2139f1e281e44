#!/usr/bin/python3
"""eval_torch.py: the PyTorch twin of `qslm-eval`, on a .qslm file or a .pth checkpoint.

    /usr/bin/python3 models/train/eval_torch.py models/spikegpt-sotu.qslm \
        --text .data/sotu/test.txt --labels .data/sentiment/test.jsonl --json

Same definitions as runtime/tools/qslm_eval.c:
  perplexity  the whole file encoded at once (special tokens as text), cut into consecutive
              windows of --window tokens (the last may be shorter; one of a single token is
              dropped), each window from a fresh state, scoring its tokens 2..N;
              ppl = exp(sum NLL / predictions).
  accuracy    each {"text", "label"} line encoded (special tokens as text), run from a fresh
              state; the classifier reads the mean of ln_out(x) over the text's tokens.
              --labels FILE is the first head; --labels TASK=FILE the head named TASK in a
              .qslm's metadata (cls.N.weight for head N); repeat it for several heads.
A .qslm file is read with qslm_format.read_qslm (its embedded tokenizer.json is used unless
--tokenizer is given), so this evaluates exactly the shipped weights.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import fastops  # noqa: E402
import spikegpt_model as sm  # noqa: E402
from qslm_format import head_tensor_name, read_qslm  # noqa: E402
from train_tokenizer import BPETokenizer  # noqa: E402


def load_model(path, tokenizer=None):
    """(model, tokenizer, heads) from a .qslm or a .pth. heads maps each named task to its
    (weight, bias); a .pth (or a file whose heads have no names) gives {}."""
    heads = {}
    if path.endswith(".qslm"):
        qf = read_qslm(path)
        cfg = sm.SpikeGPTConfig.from_metadata(qf.metadata, qf.tensors.keys())
        model = sm.SpikeGPT(cfg)
        named = qf.heads()
        for k, (task, _) in enumerate(named):
            heads[task] = (torch.from_numpy(qf.float32(head_tensor_name(k))),
                           torch.from_numpy(qf.float32(head_tensor_name(k, bias=True))))
        # the model holds head 0 as cls; heads 1.. are kept aside for use_head
        aside = {head_tensor_name(k, b) for k in range(1, len(named)) for b in (False, True)}
        model.load_qslm_tensors({n: a for n, a in qf.tensors.items() if n not in aside})
        if tokenizer is None:
            tj = qf.metadata.get("tokenizer.json")
            if tj is None:
                raise SystemExit("%s embeds no tokenizer.json; pass --tokenizer" % path)
            with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
                f.write(tj)
                tokenizer = f.name
            tok = BPETokenizer(tokenizer)
            os.unlink(tokenizer)
        else:
            tok = BPETokenizer(tokenizer)
    else:
        sd = torch.load(path, map_location="cpu")
        n_layer = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        cfg = sm.SpikeGPTConfig(n_layer=n_layer, n_embd=sd["emb.weight"].shape[1],
                                vocab_size=sd["emb.weight"].shape[0],
                                n_ffn=sd["blocks.0.ffn.key.weight"].shape[0],
                                head_lm="head.weight" in sd,
                                n_classes=sd["cls.weight"].shape[0] if "cls.weight" in sd else 0)
        model = sm.SpikeGPT(cfg)
        model.load_state_dict(sd)
        tok = BPETokenizer(tokenizer or os.path.join(ROOT, "models/tokenizer.json"))
    model.eval()
    return model, tok, heads


def use_head(model, heads, task):
    """Points model.cls at the head named task (None: the first head, as loaded)."""
    if task is None:
        return
    if task not in heads:
        raise SystemExit("the model has no task '%s' (its tasks: %s)" % (
            task, ", ".join(heads) or "none named"))
    w, b = heads[task]
    model.cls = torch.nn.Linear(w.shape[1], w.shape[0], bias=True)
    with torch.no_grad():
        model.cls.weight.copy_(w.reshape(model.cls.weight.shape))
        model.cls.bias.copy_(b)


def perplexity(model, ids, window=1024, batch=8, log=None):
    n = len(ids)
    n_windows = (n + window - 1) // window
    if n - (n_windows - 1) * window < 2:
        n_windows -= 1
    wins = [ids[w * window:(w + 1) * window] for w in range(n_windows)]
    nll, preds = 0.0, 0
    t0 = time.time()
    with torch.no_grad():
        i = 0
        while i < len(wins):
            L = len(wins[i])
            group = [wins[i]]
            i += 1
            while i < len(wins) and len(group) < batch and len(wins[i]) == L:
                group.append(wins[i])
                i += 1
            x = torch.tensor(np.array(group, dtype=np.int64))
            lg = model(x, wkv=fastops.wkv_fused)["logits"][:, :-1].double()
            nll += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1),
                                   reduction="sum").item()
            preds += x.shape[0] * (L - 1)
            if log:
                log("\r  %d/%d windows, %.0f s" % (i, len(wins), time.time() - t0))
    return {"ppl": math.exp(nll / preds), "nll": nll / preds, "tokens": n,
            "predictions": preds, "window": window, "windows": len(wins)}


def accuracy(model, seqs, labels, batch=32):
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    correct, nll = 0, 0.0
    with torch.no_grad():
        for s in range(0, len(order), batch):
            ids = order[s:s + batch]
            L = max(len(seqs[i]) for i in ids)
            idx = torch.zeros(len(ids), L, dtype=torch.long)
            mask = torch.zeros(len(ids), L)
            for j, i in enumerate(ids):
                idx[j, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[j, :len(seqs[i])] = 1
            lg = model(idx, cls_mask=mask, wkv=fastops.wkv_fused)["cls_logits"].double()
            y = torch.tensor([labels[i] for i in ids])
            correct += (lg.argmax(-1) == y).sum().item()
            nll += F.cross_entropy(lg, y, reduction="sum").item()
    return {"accuracy": correct / len(seqs), "correct": correct, "total": len(seqs),
            "nll": nll / len(seqs), "tokens": sum(len(s) for s in seqs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help=".qslm or .pth")
    ap.add_argument("--text")
    ap.add_argument("--labels", action="append", default=[],
                    help="[TASK=]FILE.jsonl, repeatable (plain FILE: the first head)")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokenizer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, heads = load_model(args.model, args.tokenizer)
    res = {"model": args.model}
    if args.text:
        with open(args.text, "rb") as f:
            text = f.read().decode("utf-8")
        ids = tok.encode(text, special_as_text=True)
        res["text"] = perplexity(model, ids, args.window, args.batch,
                                 log=lambda s: print(s, end="", file=sys.stderr, flush=True))
        print(file=sys.stderr)
    first_cls = getattr(model, "cls", None)
    for spec in args.labels:
        task, _, path = spec.rpartition("=") if "=" in spec and not os.path.exists(spec) else (None, "", spec)
        model.cls = first_cls
        use_head(model, heads, task)
        with open(path, encoding="utf-8") as f:
            items = [json.loads(l) for l in f if l.strip()]
        seqs = [tok.encode(it["text"], special_as_text=True) for it in items]
        if any(len(s) == 0 for s in seqs):
            raise SystemExit("an empty text in %s" % path)
        r = accuracy(model, seqs, [int(it["label"]) for it in items])
        r["task"], r["file"] = task, path
        res.setdefault("labels", []).append(r)
    if args.json:
        print(json.dumps(res))
    else:
        if "text" in res:
            r = res["text"]
            print("perplexity %.4f over %d predictions (%d tokens, window %d)" % (
                r["ppl"], r["predictions"], r["tokens"], r["window"]))
        for r in res.get("labels", []):
            print("%saccuracy %.4f (%d/%d), classifier NLL %.4f" % (
                "task %s: " % r["task"] if r["task"] else "", r["accuracy"], r["correct"],
                r["total"], r["nll"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
