#!/usr/bin/python3
"""make_upstream_golden.py: the upstream inference code's own outputs, on checkpoints in the
published layouts, as golden data for the C runtime (tests/runtime/test_upstream.c).

    /usr/bin/python3 tests/reference/make_upstream_golden.py \\
        --spikegpt /tmp/up-spikegpt --rwkv /tmp/up-rwkv/RWKV-v4 [--full NAME ...] [--work DIR]
    /usr/bin/python3 tests/reference/make_upstream_golden.py --write-checkpoint NAME [--seed N] -o F.pth

--spikegpt is an extracted ridgerchu/SpikeGPT tree, --rwkv the RWKV-v4 folder of an extracted
BlinkDL/RWKV-LM tree (tests/reference/README.md gives the commits and the commands). Neither is
modified or copied: this script imports their model_run.py from where they are.

For each layout it builds a state_dict of seeded random weights with the published key names,
shapes and dtypes, saves it as a .pth, runs the upstream RWKV_RNN on TOKENS (64 ids) in fp32 on
the CPU, records the logits and every LIF output (through torch's global module hooks: the
upstream code is not touched), converts the .pth with models/train/convert.py --upstream, and
writes <name>.qslm, <name>.golden.json (tokens, spikes, rates, margins) and <name>.logits.f32
(64 x vocab little-endian float32, the upstream logits).

Without --full it writes the small layouts (same structure, reduced dims) into
tests/data/upstream/, each with the first seed from its base seed whose run keeps every LIF
potential and every spiked embedding value at least MARGIN from its threshold and every spiking
layer's rate within [RATE_LO, RATE_HI]. With --full NAME (spikegpt-45m, spikegpt-216m,
rwkv4-169m, rwkv4-430m) it writes the full-size layout into --work (default /tmp/qslm-upstream)
with its base seed, whatever its margins (they are reported), for a check by hand.
"""

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))

import convert  # noqa: E402

DATA_DIR = os.path.join(ROOT, "tests", "data", "upstream")
N_TOKENS = 64
MARGIN = 1e-4  # 64 tokens x 14 LIF sites x d: 1e-3 is met by no seed
RATE_LO, RATE_HI = 0.10, 0.50
MAX_TRIES = 200
TOLERANCE = {"logits_rel": 1e-4, "spikes": "equal"}

# name -> layout. upstream: which RWKV_RNN runs it; dtype: how the .pth stores the weights.
LAYOUTS = {
    # small: committed, checked in CI
    "spikegpt-small": dict(upstream="spikegpt", n_layer=7, d=16, vocab=64, dtype="fp16",
                           seed=100, full=False),
    "spikegpt-char-small": dict(upstream="spikegpt", n_layer=2, d=16, vocab=77, dtype="fp32",
                                seed=200, full=False),
    "rwkv4-small": dict(upstream="rwkv4", n_layer=2, d=16, vocab=64, dtype="bf16", seed=300,
                        full=False, head_qk=8),
    # full-size: by hand (--full)
    "spikegpt-45m": dict(upstream="spikegpt", n_layer=12, d=512, vocab=50277, dtype="bf16",
                         seed=1, full=True),
    "spikegpt-216m": dict(upstream="spikegpt", n_layer=18, d=768, vocab=50277, dtype="bf16",
                          seed=2, full=True),
    "rwkv4-169m": dict(upstream="rwkv4", n_layer=12, d=768, vocab=50277, dtype="bf16", seed=3,
                       full=True),
    "rwkv4-430m": dict(upstream="rwkv4", n_layer=24, d=1024, vocab=50277, dtype="bf16", seed=4,
                       full=True),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CTX_LEN = 1024

# Gains over 1/sqrt(fan_in) for att.output / ffn.value, so that the LIFs (threshold 1, tau 2)
# fire 10-50% of the time; block i's are also multiplied by 2^(i // 6), which upstream's
# RWKV_RESCALE_LAYER = 6 divides out again at load.
ATT_OUT_GAIN = 8.0
FFN_VALUE_GAIN = 6.0
RESCALE = 6


def tokens_for(vocab, seed):
    return [int(t) for t in np.random.RandomState(seed).randint(0, vocab, N_TOKENS)]


def build_state_dict(lay, seed):
    """A state_dict in the published layout: SpikeGPT's / RWKV-4's src/model.py names and
    shapes (time_decay, time_first (d,); time_mix_* (1, 1, d); ln0 on block 0 only), every
    tensor in lay["dtype"], values from RandomState(seed)."""
    rng = np.random.RandomState(seed)
    n_layer, d, vocab = lay["n_layer"], lay["d"], lay["vocab"]
    f = 4 * d
    spiking = lay["upstream"] == "spikegpt"

    def normal(shape, std):
        return (rng.standard_normal(shape).astype(np.float32) * np.float32(std))

    def mat(rows, cols, gain=1.0):
        return normal((rows, cols), gain / math.sqrt(cols))

    sd = {}
    emb = normal((vocab, d), 1.0)
    emb += np.where(emb >= 0, 0.05, -0.05).astype(np.float32)  # |emb| away from Heaviside's 0
    sd["emb.weight"] = emb
    for i in range(n_layer):
        p = "blocks.%d." % i
        lns = (["ln0"] if i == 0 else []) + ["ln1", "ln2"]
        for ln in lns:
            sd[p + ln + ".weight"] = 1.0 + normal((d,), 0.1)
            sd[p + ln + ".bias"] = normal((d,), 0.1)
        ratio_0_to_1 = i / max(n_layer - 1, 1)
        ratio_1_to_almost0 = 1.0 - i / n_layer
        h = np.arange(d, dtype=np.float32)
        decay = -5 + 8 * (h / max(d - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1)
        sd[p + "att.time_decay"] = (decay + rng.uniform(-0.5, 0.5, d)).astype(np.float32)
        zigzag = (np.array([(k + 1) % 3 - 1 for k in range(d)]) * 0.5).astype(np.float32)
        sd[p + "att.time_first"] = (math.log(0.3) + zigzag + normal((d,), 0.1)).astype(np.float32)
        x = (h / d).reshape(1, 1, d)
        mix = {"k": x ** ratio_1_to_almost0, "v": x ** ratio_1_to_almost0 + 0.3 * ratio_0_to_1,
               "r": x ** (0.5 * ratio_1_to_almost0)}
        for c in "kvr":
            sd[p + "att.time_mix_" + c] = np.clip(mix[c] + rng.uniform(-0.2, 0.2, (1, 1, d)),
                                                  0, 1).astype(np.float32)
        boost = 2.0 ** (i // RESCALE) if spiking else 1.0
        sd[p + "att.key.weight"] = mat(d, d)
        sd[p + "att.value.weight"] = mat(d, d)
        sd[p + "att.receptance.weight"] = mat(d, d)
        sd[p + "att.output.weight"] = mat(d, d, (ATT_OUT_GAIN if spiking else 1.0) * boost)
        for c in "kr":
            sd[p + "ffn.time_mix_" + c] = np.clip(mix[c] + rng.uniform(-0.2, 0.2, (1, 1, d)),
                                                  0, 1).astype(np.float32)
        sd[p + "ffn.key.weight"] = mat(f, d)
        sd[p + "ffn.receptance.weight"] = mat(d, d)
        sd[p + "ffn.value.weight"] = mat(d, f, (FFN_VALUE_GAIN if spiking else 1.0) * boost)
    sd["ln_out.weight"] = 1.0 + normal((d,), 0.1)
    sd["ln_out.bias"] = normal((d,), 0.1)
    sd["head.weight"] = mat(vocab, d)
    if lay.get("head_qk"):
        # RWKV_HEAD_QK_DIM > 0 at training time (model.py); the RWKV_RNN ignores them.
        q = lay["head_qk"]
        sd["head_q.weight"] = mat(q, d)
        sd["head_k.weight"] = mat(q, d)
        sd["copy_mask"] = np.tril(np.ones((CTX_LEN, CTX_LEN), np.float32))
    dt = DTYPES[lay["dtype"]]
    return {k: torch.from_numpy(v).to(dt) for k, v in sd.items()}


# ------------------------------------------------------------------------- running upstream


class Recorder:
    """Global module hooks: every LIFNode call (its input, its membrane before, its spikes) and
    every ATan call (the embedding spike), in call order."""

    def __init__(self, lif_cls, atan_cls):
        self.lif_cls, self.atan_cls = lif_cls, atan_cls
        self.lif, self.emb = [], []
        self._pending = {}
        self.handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self.pre),
            torch.nn.modules.module.register_module_forward_hook(self.post)]

    def pre(self, module, inputs):
        if isinstance(module, self.lif_cls):
            v = module.v
            v = v.clone() if torch.is_tensor(v) else torch.full_like(inputs[0], float(v))
            self._pending[id(module)] = (v, inputs[0].clone(), module.tau, module.v_threshold)

    def post(self, module, inputs, output):
        if isinstance(module, self.lif_cls):
            v, x, tau, thr = self._pending.pop(id(module))
            h = v + (x - v) / tau              # the membrane the threshold is compared with
            self.lif.append((output.clone(), float((h - thr).abs().min())))
        elif isinstance(module, self.atan_cls):
            self.emb.append((output.clone(), float(inputs[0].abs().min())))

    def close(self):
        for h in self.handles:
            h.remove()


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_spikegpt(tree, model_base, lay, tokens):
    """SpikeGPT's src/model_run.py RWKV_RNN as its run.py drives it (fp32, CPU)."""
    if tree not in sys.path:
        sys.path.insert(0, tree)
    import src.model_run as mr  # noqa: E402  (the upstream module, from tree)
    from src.spikingjelly.clock_driven import neuron, surrogate
    args = types.SimpleNamespace(MODEL_NAME=model_base, RUN_DEVICE="cpu", FLOAT_MODE="fp32",
                                 n_layer=lay["n_layer"], n_embd=lay["d"], ctx_len=CTX_LEN,
                                 vocab_size=lay["vocab"], head_qk=0, pre_ffn=0, grad_cp=0,
                                 my_pos_emb=0)
    model = mr.RWKV_RNN(args)
    rec = Recorder(neuron.LIFNode, surrogate.ATan)
    logits, spikes, margins, emb = [], [], [], []
    state = mem1 = mem2 = None
    try:
        for t in range(len(tokens)):
            rec.lif.clear()
            rec.emb.clear()
            out, state, mem1, mem2 = model.forward(tokens[:t + 1], state, mem1, mem2)
            logits.append(out.float().numpy().copy())
            assert len(rec.lif) == 2 * lay["n_layer"], len(rec.lif)
            # call order: mem1[0] (time mix), mem2[0] (channel mix), mem1[1], ...
            spikes.append([[rec.lif[2 * i + j][0].numpy().astype(np.uint8) for j in (0, 1)]
                           for i in range(lay["n_layer"])])
            margins.append(min(m for _, m in rec.lif))
            emb.append(rec.emb[0] if rec.emb else None)
    finally:
        rec.close()
    assert mem1 is not None and len(mem1) == lay["n_layer"] and mem1[0] is not mem1[1]
    return np.stack(logits), spikes, margins, emb


def run_rwkv4(tree, model_base, lay, tokens):
    """RWKV-LM's RWKV-v4/src/model_run.py RWKV_RNN as RWKV-v4/run.py drives it for the Pile
    models (fp32, CPU, model_type 'RWKV')."""
    mr = load_module("rwkv_v4_model_run", os.path.join(tree, "src", "model_run.py"))
    model = mr.RWKV_RNN(model_base, "cpu", "RWKV", lay["n_layer"], lay["d"], CTX_LEN)
    logits = []
    for t in range(len(tokens)):
        logits.append(np.asarray(model.run(tokens[:t + 1]), dtype=np.float32))
    return np.stack(logits), None, None, None


# ------------------------------------------------------------------------- golden files


def summarize(lay, spikes, margins, emb):
    """(rates, min margins, problems) of a SpikeGPT run."""
    if spikes is None:
        return {}, {}, []
    n = lay["n_layer"]
    rates = {"att": [float(np.mean([s[i][0].mean() for s in spikes])) for i in range(n)],
             "ffn": [float(np.mean([s[i][1].mean() for s in spikes])) for i in range(n)]}
    mins = {"lif": float(min(margins))}
    if emb[0] is not None:
        rates["emb"] = float(np.mean([e[0].numpy().mean() for e in emb]))
        mins["emb"] = float(min(e[1] for e in emb))
    problems = ["%s rate %.3f in layer %d" % (k, r, i) for k in ("att", "ffn")
                for i, r in enumerate(rates[k]) if not RATE_LO <= r <= RATE_HI]
    problems += ["margin %s %.2g" % (k, v) for k, v in mins.items() if v <= MARGIN]
    return rates, mins, problems


def bits(a):
    return "".join("1" if v else "0" for v in a.tolist())


def run_layout(name, lay, args, out_dir, work):
    os.makedirs(work, exist_ok=True)
    base = os.path.join(work, name)
    seeds = range(lay["seed"], lay["seed"] + (1 if lay["full"] else MAX_TRIES))
    for seed in seeds:
        t0 = time.time()
        sd = build_state_dict(lay, seed)
        torch.save(sd, base + ".pth")
        del sd
        tokens = tokens_for(lay["vocab"], seed)
        if lay["upstream"] == "spikegpt":
            logits, spikes, margins, emb = run_spikegpt(args.spikegpt, base, lay, tokens)
        else:
            logits, spikes, margins, emb = run_rwkv4(args.rwkv, base, lay, tokens)
        rates, mins, problems = summarize(lay, spikes, margins, emb)
        print("%s seed %d: upstream ran %d tokens in %.1f s; rates %s margins %s%s"
              % (name, seed, len(tokens), time.time() - t0,
                 {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3))
                  for k, v in rates.items()}, {k: "%.2g" % v for k, v in mins.items()},
                 ("; %s: " % ("below the small layouts' rules" if lay["full"] else "rejected")
                  + ", ".join(problems)) if problems else ""), flush=True)
        if not problems or lay["full"]:
            break
    else:
        raise SystemExit("%s: no seed meets the margin and rate rules" % name)

    os.makedirs(out_dir, exist_ok=True)
    qslm = os.path.join(out_dir, name + ".qslm")
    t0 = time.time()
    convert.convert(base + ".pth", qslm, name="upstream golden " + name, upstream=lay["upstream"],
                    provenance_extra="; tests/reference/make_upstream_golden.py seed %d" % seed,
                    log=lambda m: print("  convert: " + m))
    print("  converted in %.1f s" % (time.time() - t0))
    logits.astype("<f4").tofile(os.path.join(out_dir, name + ".logits.f32"))
    g = {"model": name + ".qslm",
         "logits": name + ".logits.f32",
         "generator": "tests/reference/make_upstream_golden.py",
         "upstream": {"spikegpt": "ridgerchu/SpikeGPT src/model_run.py RWKV_RNN",
                      "rwkv4": "BlinkDL/RWKV-LM RWKV-v4/src/model_run.py RWKV_RNN"}[lay["upstream"]],
         "upstream_commit": git_head(args.spikegpt_git if lay["upstream"] == "spikegpt"
                                     else args.rwkv_git),
         "layout": {k: v for k, v in lay.items() if k not in ("full",)},
         "seed": seed,
         "tokens": tokens,
         "vocab": lay["vocab"],
         "n_layer": lay["n_layer"],
         "tolerance": TOLERANCE,
         "spike_rates": rates,
         "min_margin": mins}
    if spikes is not None:
        g["spikes_att"] = [[bits(s[i][0]) for i in range(lay["n_layer"])] for s in spikes]
        g["spikes_ffn"] = [[bits(s[i][1]) for i in range(lay["n_layer"])] for s in spikes]
        if emb[0] is not None:
            g["spikes_emb"] = [bits(e[0].numpy()) for e in emb]
    with open(os.path.join(out_dir, name + ".golden.json"), "w") as f:
        json.dump(g, f, indent=1)
        f.write("\n")
    if not lay["full"]:
        os.unlink(base + ".pth")
    return g


def git_head(git_dir):
    if not git_dir:
        return "unknown (pass --spikegpt-git / --rwkv-git)"
    return subprocess.check_output(["git", "--git-dir", git_dir, "rev-parse", "HEAD"],
                                   text=True).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spikegpt", help="extracted ridgerchu/SpikeGPT tree")
    ap.add_argument("--rwkv", help="RWKV-v4 folder of an extracted RWKV-LM tree")
    ap.add_argument("--spikegpt-git", default="/work/.mirror/ridgerchu+SpikeGPT/repo")
    ap.add_argument("--rwkv-git", default="/work/.mirror/BlinkDL+RWKV-LM/repo")
    ap.add_argument("--full", nargs="*", metavar="NAME",
                    help="full-size layouts to run (into --work), instead of the small ones")
    ap.add_argument("--only", nargs="*", metavar="NAME", help="small layouts to (re)make")
    ap.add_argument("--work", default="/tmp/qslm-upstream")
    ap.add_argument("--write-checkpoint", metavar="NAME",
                    help="only write layout NAME's seeded random .pth to -o (no upstream code "
                         "needed): what scripts/big-model.sh converts")
    ap.add_argument("--seed", type=int, help="with --write-checkpoint: instead of the layout's")
    ap.add_argument("-o", "--out", help="with --write-checkpoint: the .pth to write")
    args = ap.parse_args()
    if args.write_checkpoint is not None:
        if args.write_checkpoint not in LAYOUTS:
            ap.error("unknown layout %s (one of %s)" % (args.write_checkpoint, ", ".join(LAYOUTS)))
        if not args.out:
            ap.error("--write-checkpoint needs -o FILE.pth")
        lay = LAYOUTS[args.write_checkpoint]
        sd = build_state_dict(lay, lay["seed"] if args.seed is None else args.seed)
        torch.save(sd, args.out)
        print("wrote %s: layout %s, %d tensors, %d parameters"
              % (args.out, args.write_checkpoint, len(sd), sum(v.numel() for v in sd.values())))
        return 0
    if not args.spikegpt or not args.rwkv:
        ap.error("--spikegpt and --rwkv are both needed to run the upstream code")
    args.spikegpt = os.path.abspath(args.spikegpt)
    args.rwkv = os.path.abspath(args.rwkv)
    # what the upstream modules read from the environment at import
    os.environ.setdefault("RWKV_JIT_ON", "0")
    os.environ.setdefault("RWKV_RUN_DEVICE", "cpu")
    os.environ.setdefault("RWKV_FLOAT_MODE", "fp32")
    torch.set_num_threads(1)
    if args.full is not None:
        for name in args.full:
            if name not in LAYOUTS or not LAYOUTS[name]["full"]:
                raise SystemExit("unknown full-size layout %s" % name)
            run_layout(name, LAYOUTS[name], args, args.work, args.work)
        return 0
    for name, lay in LAYOUTS.items():
        if not lay["full"] and (not args.only or name in args.only):
            run_layout(name, lay, args, DATA_DIR, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
