#!/usr/bin/python3
"""train.py: trains the default model, a small SpikeGPT (GPT mode) language model.

    # the second edition: 16.4M tokens of SOTU, Brown and mail, resumable (models/README.md)
    /usr/bin/python3 models/train/train.py --mix sotu=0.45,brown=0.25,mail=0.3 \
        --total-tokens 16384000 --warmup 100 --tokenizer models/tokenizer.json [--resume]
    # the first edition: SOTU alone, 50 minutes of wall clock
    /usr/bin/python3 models/train/train.py --seed 1234 --max-minutes 50

Model: spikegpt_model.SpikeGPT (LIF tau 2, threshold 1, ATan surrogate alpha 2; spikes on the
time-mix and channel-mix outputs, none on the embedding), d 384, 3 layers, n_ffn 1536, vocab
4096. Data (data_mix.py): the corpora of --mix by weight, each split's documents encoded one by
one and joined with <|endoftext|>; the windows of ctx+1 tokens of step s are drawn from the seed
and s alone. Adam, linear warmup then cosine decay to lr_min.

Length. With --total-tokens the cosine runs over that many tokens' steps, whatever the machine's
speed; --max-minutes then only limits this invocation. The run saves a checkpoint (model,
optimiser, step, loss rows: checkpoint.py) every --checkpoint-minutes and when it stops (time
limit, --max-steps, Ctrl-C, SIGTERM); the same command with --resume continues it, and ends with
the weights an uninterrupted run would have (test_train.py). Without --total-tokens the cosine
runs over the wall-clock budget (--max-minutes) as the first edition was trained; such a run
cannot be resumed.

At the end: the SpikeGPT state_dict (--out), the loss CSV (--csv: step, tokens, loss, lr,
seconds, valid_loss on SOTU valid, valid_<corpus> for the others), the loss curve (--svg), a
summary JSON (--info).

--spike-ffn-hidden trains the variant whose channel-mix hidden activation is a LIF spike
(metadata spike.ffn_hidden; runtime/FORMAT.md), with the key weights drawn N(0, gain^2 / d)
(--ffn-key-gain) so that the hidden LIF fires from the first step. --max-steps N stops after N
steps (without --total-tokens the cosine runs over N steps). --qslm PATH also writes the
converted model (f32, the tokenizer embedded, ffn.value transposed for spike.ffn_hidden) with
convert.py. After training, the spike rates of every LIF on the valid windows are printed and
written to the info JSON.
"""

import argparse
import csv
import json
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import checkpoint  # noqa: E402
import data_mix  # noqa: E402
import fastops  # noqa: E402
import spikegpt_model as sm  # noqa: E402
from train_tokenizer import BPETokenizer  # noqa: E402

sm.lif_multistep = fastops.lif_multistep_fast


def rel(p):
    return os.path.join(ROOT, p)


def load_tokens(tok, path, cache):
    """The split's addresses, encoded one by one, each preceded by <|endoftext|>: int32 array."""
    if cache and os.path.exists(cache) and os.path.getmtime(cache) > max(
            os.path.getmtime(path), os.path.getmtime(rel("models/tokenizer.json"))):
        return np.load(cache)
    with open(path, encoding="utf-8") as f:
        docs = [d for d in f.read().split("\n\n") if d.strip()]
    ids = []
    for d in docs:
        ids.append(tok.eot_id)
        ids.extend(tok.encode(d.strip("\n")))
    arr = np.array(ids, dtype=np.int32)
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        np.save(cache, arr)
    return arr


def make_config(args, vocab):
    return sm.SpikeGPTConfig(n_layer=args.n_layer, n_embd=args.d, vocab_size=vocab,
                             n_ffn=args.n_ffn, architecture="spikegpt", tau=2.0, threshold=1.0,
                             spike_ffn_hidden=args.spike_ffn_hidden, surrogate_alpha=2.0)


def init_weights(model, seed, ffn_key_gain=0.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.emb.weight.uniform_(-1e-4, 1e-4, generator=g)  # RWKV's small embedding (ln0 follows)
        # head: small, so the first logits are near uniform
        model.head.weight.normal_(0, 0.5 / math.sqrt(model.config.n_embd), generator=g)
        if ffn_key_gain > 0:  # drawn after the default recipe's draws, which stay the same
            for b in model.blocks:
                b.ffn.key.weight.normal_(0, ffn_key_gain / math.sqrt(model.config.n_embd),
                                         generator=g)


def spike_rates(model, windows, batch, wkv):
    """Per LIF kind (att, ffn, ffn_hidden), per layer: the fraction of spikes over the windows
    (each window from a fresh state), the GPT-mode trace of every LIF."""
    sums, n = {}, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            w = windows[i:i + batch]
            tr = model(w, trace=True, wkv=wkv)["trace"]["layers"]
            for li, lt in enumerate(tr):
                for kind in ("att", "ffn", "ffn_hidden"):
                    if "s_" + kind in lt:
                        sums.setdefault(kind, [0.0] * len(tr))[li] += lt["s_" + kind].sum().item()
            n += w.numel()
    model.train()
    cfg = model.config
    width = {"att": cfg.n_embd, "ffn": cfg.n_embd, "ffn_hidden": cfg.n_ffn}
    return {k: [x / (n * width[k]) for x in v] for k, v in sums.items()}


def write_svg(path, rows, title):
    """A loss curve (train loss per step, smoothed, and valid loss points) as a plain SVG."""
    W, H, L, R, T, B = 720, 420, 60, 20, 40, 50
    steps = [r["step"] for r in rows]
    tr = [r["loss"] for r in rows]
    va = [(r["step"], r["valid_loss"]) for r in rows if r.get("valid_loss") not in (None, "")]
    sm_tr, ema = [], None
    for v in tr:
        ema = v if ema is None else 0.95 * ema + 0.05 * v
        sm_tr.append(ema)
    allv = tr + [v for _, v in va]
    ymin, ymax = math.floor(min(allv)), math.ceil(min(max(allv), max(allv[5:] or allv) + 0.5))
    xmax = max(steps) or 1
    X = lambda s: L + (W - L - R) * s / xmax
    Y = lambda v: T + (H - T - B) * (1 - (min(max(v, ymin), ymax) - ymin) / max(ymax - ymin, 1e-9))
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="12">' % (W, H, W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="14">%s</text>' % (L, title)]
    for i in range(6):
        v = ymin + (ymax - ymin) * i / 5
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (L, W - R, Y(v), Y(v)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>' % (L - 6, Y(v) + 4, v))
    for i in range(6):
        s = xmax * i / 5
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (X(s), H - B + 18, s))
    out.append('<text x="%d" y="%d" text-anchor="middle">step</text>' % ((L + W - R) // 2, H - 12))
    out.append('<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">'
               'cross-entropy (nats/token)</text>' % ((T + H - B) // 2, (T + H - B) // 2))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>' % (L, W - R, H - B, H - B))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>' % (L, L, T, H - B))
    pts = " ".join("%.1f,%.1f" % (X(s), Y(v)) for s, v in zip(steps, tr))
    out.append('<polyline points="%s" fill="none" stroke="#9ecae1" stroke-width="1"/>' % pts)
    pts = " ".join("%.1f,%.1f" % (X(s), Y(v)) for s, v in zip(steps, sm_tr))
    out.append('<polyline points="%s" fill="none" stroke="#08519c" stroke-width="2"/>' % pts)
    if va:
        pts = " ".join("%.1f,%.1f" % (X(s), Y(v)) for s, v in va)
        out.append('<polyline points="%s" fill="none" stroke="#d94801" stroke-width="2"/>' % pts)
        for s, v in va:
            out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="#d94801"/>' % (X(s), Y(v)))
    lx = W - R - 200
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#9ecae1"/><text x="%d" y="%d">train (per step)</text>'
               % (lx, lx + 20, T + 10, T + 10, lx + 26, T + 14))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#08519c" stroke-width="2"/><text x="%d" y="%d">train (EMA 0.95)</text>'
               % (lx, lx + 20, T + 28, T + 28, lx + 26, T + 32))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#d94801" stroke-width="2"/><text x="%d" y="%d">valid</text>'
               % (lx, lx + 20, T + 46, T + 46, lx + 26, T + 50))
    out.append("</svg>")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(path + ".tmp", path)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--n-layer", type=int, default=3)
    ap.add_argument("--n-ffn", type=int, default=1536)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=50, help="warmup steps")
    ap.add_argument("--wkv", choices=("fused", "chunk", "loop"), default="fused",
                    help="fused: TorchScript loop with RWKV-4's hand-written backward (fastest "
                    "here); chunk: the closed form over chunks; loop: the reference loop")
    ap.add_argument("--wkv-chunk", type=int, default=32)
    ap.add_argument("--mix", default="sotu",
                    help="corpora and weights, e.g. sotu=0.45,brown=0.25,mail=0.3 (data_mix.py)")
    ap.add_argument("--data-dir", default=os.environ.get("QSLM_DATA_DIR", rel(".data")))
    ap.add_argument("--total-tokens", type=int, default=0,
                    help="the run's length in tokens: the cosine runs over its steps, and "
                    "--max-minutes only limits this invocation (resume with --resume); 0: the "
                    "old behaviour, the cosine over --max-minutes (or --max-steps)")
    ap.add_argument("--max-minutes", type=float, default=50.0)
    ap.add_argument("--max-steps", type=int, default=0,
                    help="0: no step limit; N: stop after N steps, the cosine runs over N steps")
    ap.add_argument("--checkpoint", help="resumable state (default: checkpoint.pt next to --out)")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0,
                    help="save the checkpoint this often (also when stopping)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run saved in --checkpoint (refused if it is another run)")
    ap.add_argument("--valid-every", type=int, default=50)
    ap.add_argument("--valid-windows", type=int, default=16,
                    help="SOTU valid windows; the other corpora get half as many")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokenizer", default=rel("models/tokenizer.json"))
    ap.add_argument("--out", default=rel("models/train/out/spikegpt-sotu.pth"))
    ap.add_argument("--csv", default=rel("models/train/loss.csv"))
    ap.add_argument("--svg", default=rel("models/loss-curve.svg"))
    ap.add_argument("--info", help="run summary JSON (default: train_info.json next to --out)")
    ap.add_argument("--qslm", help="also write the converted .qslm (f32, tokenizer embedded)")
    ap.add_argument("--name", help="general.name of the --qslm file (default: its file name)")
    ap.add_argument("--spike-ffn-hidden", action="store_true",
                    help="channel-mix hidden activation is a LIF spike (spike.ffn_hidden)")
    ap.add_argument("--ffn-key-gain", type=float, default=None,
                    help="init ffn.key.weight as N(0, gain^2/d) (default: 3.0 with "
                    "--spike-ffn-hidden, else nn.Linear's default init)")
    ap.add_argument("--profile", action="store_true", help="time a few steps and exit")
    args = ap.parse_args(argv)
    if args.ffn_key_gain is None:
        args.ffn_key_gain = 3.0 if args.spike_ffn_hidden else 0.0
    try:
        args.mix_weights = data_mix.parse_mix(args.mix)
    except ValueError as e:
        ap.error(str(e))
    if args.total_tokens < 0:
        ap.error("--total-tokens must be >= 0")
    if args.resume and not args.total_tokens:
        ap.error("--resume needs --total-tokens: a run timed by the wall clock cannot be resumed")
    return args


class StopRequest:
    """SIGINT / SIGTERM ask the loop to stop at the end of its step and save a checkpoint."""

    def __init__(self):
        self.requested = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        self.requested = signal.Signals(signum).name


def write_csv(path, v0, rows, valid_names):
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        extra = ["valid_%s" % n for n in valid_names if n != "sotu"]
        w.writerow(["step", "tokens", "loss", "lr", "seconds", "valid_loss"] + extra)
        w.writerow([0, 0, "", "", 0, "%.4f" % v0["sotu" if "sotu" in v0 else valid_names[0]]]
                   + ["%.4f" % v0[n] for n in valid_names if n != "sotu"])
        for r in rows:
            vals = r.get("valid") or {}
            w.writerow([r["step"], r["tokens"], "%.4f" % r["loss"], "%.3e" % r["lr"],
                        "%.1f" % r["seconds"],
                        "" if r["valid_loss"] == "" else "%.4f" % r["valid_loss"]]
                       + ["" if n not in vals else "%.4f" % vals[n]
                          for n in valid_names if n != "sotu"])
    os.replace(path + ".tmp", path)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    tok = BPETokenizer(args.tokenizer)
    outdir = os.path.dirname(args.out)
    ckpt_path = args.checkpoint or os.path.join(outdir, "checkpoint.pt")
    t0 = time.time()
    mix = data_mix.Mix(tok, args.tokenizer, args.data_dir, args.mix_weights, outdir,
                       log=lambda m: print(m, flush=True))
    print("data: %s (%.1fs)" % (", ".join("%s %.3f" % nw for nw in args.mix_weights),
                                time.time() - t0), flush=True)

    cfg = make_config(args, tok.vocab_size)
    model = sm.SpikeGPT(cfg)
    init_weights(model, args.seed, args.ffn_key_gain)
    n_params = sum(p.numel() for p in model.parameters())
    print("model: %r\nparameters: %d (f32 %.1f MB)" % (cfg, n_params, n_params * 4 / 1e6),
          flush=True)
    wkv = {"fused": fastops.wkv_fused, "chunk": fastops.make_wkv_chunked(args.wkv_chunk),
           "loop": sm.wkv_loop}[args.wkv]

    valid_names = [n for n, _ in args.mix_weights]
    vwins = {n: mix.valid_windows(n, args.valid_windows if n == "sotu"
                                  else max(args.valid_windows // 2, 1), args.ctx)
             for n in valid_names}
    main_valid = "sotu" if "sotu" in vwins else valid_names[0]
    vwin = vwins[main_valid]
    nv = len(vwin)

    def batch(step):
        return mix.batch(args.seed, step, args.batch, args.ctx)

    def valid_losses():
        model.eval()
        out = {}
        with torch.no_grad():
            for name, wins in vwins.items():
                tot = 0.0
                for i in range(0, len(wins), args.batch):
                    w = wins[i:i + args.batch]
                    lg = model(w[:, :-1], wkv=wkv)["logits"]
                    tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), w[:, 1:].reshape(-1),
                                           reduction="sum").item()
                out[name] = tot / (len(wins) * args.ctx)
        model.train()
        return out

    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    budget = args.max_minutes * 60.0
    steps_per = args.batch * args.ctx
    total_steps = -(-args.total_tokens // steps_per) if args.total_tokens else 0

    def lr_at(step, elapsed):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        if total_steps:
            p = min(step / total_steps, 1.0)
        else:
            p = min(elapsed / budget, 1.0)
            if args.max_steps:
                p = max(p, min(step / args.max_steps, 1.0))
        return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * p))

    if args.profile:
        rates = spike_rates(model, vwin[:args.batch, :-1], args.batch, wkv)
        print("initial spike rates (valid, %d windows): %s" % (
            min(nv, args.batch), {k: [round(x, 4) for x in v] for k, v in rates.items()}),
            flush=True)
        for i in range(3):
            x, y = batch(i)
            ts = time.time()
            lg = model(x, wkv=wkv)["logits"]
            loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1))
            tf = time.time()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            tb = time.time()
            opt.step()
            te = time.time()
            print("step %d: loss %.3f fwd %.2fs bwd %.2fs opt %.2fs -> %.0f tokens/s" % (
                i, loss.item(), tf - ts, tb - tf, te - tb, x.numel() / (te - ts)), flush=True)
        return 0

    ident = checkpoint.run_identity(args, checkpoint.file_sha256(args.tokenizer))
    if args.resume:
        if not os.path.exists(ckpt_path):
            print("train: --resume: no checkpoint at %s" % ckpt_path, file=sys.stderr)
            return 1
        try:
            st = checkpoint.load(ckpt_path, ident, model, opt)
        except ValueError as e:
            print("train: %s" % e, file=sys.stderr)
            return 1
        step, tokens, done_secs, rows, v0 = (st["step"], st["tokens"], st["seconds"], st["rows"],
                                             st["v0"])
        last_valid = next((r["valid_loss"] for r in reversed(rows) if r["valid_loss"] != ""),
                          v0[main_valid])
        print("resumed %s: step %d of %d, %d tokens, %.1f min trained" % (
            ckpt_path, step, total_steps, tokens, done_secs / 60), flush=True)
    else:
        if args.total_tokens and os.path.exists(ckpt_path):
            print("train: %s exists: continue it with --resume, or move it away to start over"
                  % ckpt_path, file=sys.stderr)
            return 1
        step, tokens, done_secs, rows = 0, 0, 0.0, []
        v0 = valid_losses()
        last_valid = v0[main_valid]
        print("step 0: valid loss %s" % ", ".join("%s %.4f" % kv for kv in v0.items()),
              flush=True)

    def save_checkpoint(secs):
        if args.total_tokens:
            checkpoint.save(ckpt_path, ident, model, opt, {
                "step": step, "tokens": tokens, "seconds": secs, "rows": rows, "v0": v0})

    stop = StopRequest()
    start_step = step
    start = time.time()
    last_save = start
    stopped_by = None
    while True:
        elapsed = time.time() - start
        if total_steps and step >= total_steps:
            break
        if stop.requested:
            stopped_by = stop.requested
            break
        if elapsed >= budget:
            stopped_by = "the time limit (--max-minutes %g)" % args.max_minutes
            break
        if args.max_steps and step >= args.max_steps:
            stopped_by = "--max-steps" if total_steps else None
            break
        lr = lr_at(step, done_secs + elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch(step)
        lg = model(x, wkv=wkv)["logits"]
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        secs = done_secs + time.time() - start
        row = {"step": step, "tokens": tokens, "loss": loss.item(), "lr": lr, "seconds": secs,
               "valid_loss": ""}
        if step % args.valid_every == 0:
            row["valid"] = valid_losses()
            row["valid_loss"] = last_valid = row["valid"][main_valid]
        rows.append(row)
        if step % 5 == 0 or step == 1 or row["valid_loss"] != "":
            if total_steps:
                per_step = (time.time() - start) / max(step - start_step, 1)
                left = "step %d of %d, ETA %.1f min" % (step, total_steps,
                                                        (total_steps - step) * per_step / 60)
            else:
                left = "ETA %.1f min" % (max(budget - secs, 0) / 60)
            print("step %d tokens %d loss %.4f%s lr %.2e | %.0f tok/s | %.1f min, %s" % (
                step, tokens, row["loss"],
                (" valid " + " ".join("%s %.4f" % kv for kv in row["valid"].items()))
                if row["valid_loss"] != "" else "",
                lr, tokens / max(secs, 1e-9), secs / 60, left), flush=True)
        if args.total_tokens and time.time() - last_save >= args.checkpoint_minutes * 60:
            save_checkpoint(secs)
            last_save = time.time()
    secs = done_secs + time.time() - start
    if stopped_by and args.total_tokens:
        save_checkpoint(secs)
        print("stopped by %s at step %d of %d (%d tokens, %.1f min trained); checkpoint %s: "
              "continue with the same arguments and --resume" % (
                  stopped_by, step, total_steps, tokens, secs / 60, ckpt_path), flush=True)
        write_csv(args.csv, v0, rows, valid_names)
        return 0
    # final validation, then save everything
    if rows and rows[-1]["valid_loss"] == "":
        rows[-1]["valid"] = valid_losses()
        rows[-1]["valid_loss"] = last_valid = rows[-1]["valid"][main_valid]
    save_checkpoint(secs)
    rates = spike_rates(model, vwin[:, :-1], args.batch, wkv)
    print("spike rates on the valid windows, per layer: %s" % (
        {k: [round(x, 4) for x in v] for k, v in rates.items()}), flush=True)
    os.makedirs(outdir, exist_ok=True)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(sd, args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)
    info = {"seed": args.seed, "args": {k: v for k, v in vars(args).items()},
            "config": vars(cfg), "parameters": n_params, "steps": step, "tokens_seen": tokens,
            "train_tokens": {n: int(len(t)) for n, t in mix.train.items()},
            "seconds": secs, "tokens_per_second": tokens / max(secs, 1e-9),
            "final_train_loss_ema": None, "final_valid_loss": last_valid,
            "final_valid_losses": rows[-1].get("valid") if rows else v0,
            "valid_spike_rates": rates, "torch": torch.__version__}
    ema = None
    for r in rows:
        ema = r["loss"] if ema is None else 0.95 * ema + 0.05 * r["loss"]
    info["final_train_loss_ema"] = ema
    with open(args.info or os.path.join(outdir, "train_info.json"), "w") as f:
        json.dump(info, f, indent=1, default=str)
    write_csv(args.csv, v0, rows, valid_names)
    if rows:
        write_svg(args.svg, rows, "SpikeGPT d%d L%d on %s: %d steps, %.2fM tokens, %.0f min" % (
            args.d, args.n_layer, "+".join(valid_names), step, tokens / 1e6, secs / 60))
    print("done: %d steps, %d tokens, %.1f min, %.0f tokens/s; train loss (EMA) %.4f, valid %.4f"
          % (step, tokens, secs / 60, tokens / secs, ema or float("nan"), last_valid), flush=True)
    print("saved %s, %s, %s" % (args.out, args.csv, args.svg), flush=True)
    if args.qslm:
        import convert
        convert.convert(args.out, args.qslm, args.tokenizer, "f32", args.name,
                        spike_ffn_hidden=args.spike_ffn_hidden,
                        provenance_extra="; models/train/train.py " + " ".join(sys.argv[1:]),
                        log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
