#!/usr/bin/python3
"""make_golden.py: tiny random SpikeGPT / RWKV-4 models and the reference outputs the C runtime
is tested against.

    /usr/bin/python3 tests/reference/make_golden.py

writes, for each model below, tests/data/reference/<name>.qslm and <name>.golden.json (see
tests/reference/README.md for their contents). The output is deterministic: every random draw
comes from numpy's RandomState(seed), torch runs on one thread, and the files are byte-identical
from one run to the next.

A model's seed is the first one, from its base seed up, whose golden run is safe to compare
against another implementation: every LIF evaluation has |H - threshold| > MARGIN and every
embedding value read through the embedding spike has |x| > MARGIN (float rounding differences
between C and torch can not flip a spike), and every spiking layer fires at a rate in
[RATE_LO, RATE_HI].
"""

import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from spikegpt_ref import DATA_DIR, ROOT, compare_rnn_gpt, run_rnn  # noqa: E402
from qslm_format import decode_qslm, encode_qslm, read_qslm, write_qslm  # noqa: E402
from spikegpt_model import SpikeGPT, SpikeGPTConfig, state_keys  # noqa: E402

MARGIN = 1e-3
RATE_LO, RATE_HI = 0.10, 0.50
MAX_TRIES = 500
D, N_FFN, VOCAB = 32, 128, 64

# The fixed input: 16 token ids in [0, 64).
TOKENS = [17, 3, 42, 58, 9, 26, 0, 63, 31, 12, 47, 5, 38, 21, 54, 17]

# Tolerances the C tests hold the runtime to (also written into every golden file).
TOLERANCE = {"logits_abs": 1e-4, "cls_logits_abs": 1e-4, "state_rel": 1e-5, "spikes": "equal"}

# (name, config, base seed).
MODELS = [
    ("spike_lm", dict(n_layer=2, architecture="spikegpt"), 1000),
    ("spike_emb", dict(n_layer=2, architecture="spikegpt", spike_emb=True), 2000),
    ("rwkv4", dict(n_layer=2, architecture="rwkv4"), 3000),
    ("spike_rescale", dict(n_layer=3, architecture="spikegpt", rescale_layer=1), 4000),
    ("spike_cls", dict(n_layer=2, architecture="spikegpt", n_classes=3), 5000),
    ("spike_ffn_hidden", dict(n_layer=2, architecture="spikegpt", spike_ffn_hidden=True), 6000),
]
F16_OF = "spike_lm"  # spike_lm_f16: spike_lm's weights, 2-D matrices stored as f16

# att.output / ffn.value weight std multipliers (over 1/sqrt(fan_in)), tuned so that spiking
# layers fire 10-50% of the time.
ATT_OUT_GAIN = 8.0
FFN_VALUE_GAIN = 6.0
# With spike.ffn_hidden: ffn.key's multiplier, so that the hidden LIF (k = key @ xk, threshold 1,
# tau 2) fires 10-50% of the time, and ffn.value's (it reads {0,1} spikes, not relu(k)^2).
FFN_HIDDEN_KEY_GAIN = 3.0
FFN_HIDDEN_VALUE_GAIN = 8.0


def config_for(kw):
    return SpikeGPTConfig(n_embd=D, n_ffn=N_FFN, vocab_size=VOCAB, **kw)


def build(cfg, seed):
    """A SpikeGPT module with every parameter drawn from RandomState(seed)."""
    rng = np.random.RandomState(seed)
    torch.manual_seed(seed)  # only for nn.Module construction; every value is overwritten
    model = SpikeGPT(cfg)
    d = cfg.n_embd

    def normal(shape, std):
        return rng.standard_normal(shape) * std

    new = {}
    for name, p in model.state_dict().items():
        shape = tuple(p.shape)
        base = p.detach().double().numpy()
        if name == "emb.weight":
            x = normal(shape, 1.0)
            v = x + np.where(x >= 0, 0.05, -0.05)  # keep |emb| away from the spike threshold 0
        elif name.endswith(".time_decay"):
            v = np.clip(base + rng.uniform(-0.5, 0.5, shape), -5.0, 3.0)
        elif name.endswith(".time_first"):
            v = base + normal(shape, 0.1)
        elif ".time_mix_" in name:
            v = np.clip(base + rng.uniform(-0.2, 0.2, shape), 0.0, 1.0)
        elif ".ln" in name or name.startswith("ln_out"):
            v = (1.0 + normal(shape, 0.1)) if name.endswith(".weight") else normal(shape, 0.1)
        elif name == "cls.bias":
            v = normal(shape, 0.1)
        elif len(shape) == 2:
            std = 1.0 / math.sqrt(shape[1])
            layer = int(name.split(".")[1]) if name.startswith("blocks.") else 0
            if name.endswith("att.output.weight"):
                std *= ATT_OUT_GAIN / cfg.layer_scale(layer)
            elif name.endswith("ffn.value.weight"):
                gain = FFN_HIDDEN_VALUE_GAIN if cfg.spike_ffn_hidden else FFN_VALUE_GAIN
                std *= gain / cfg.layer_scale(layer)
            elif name.endswith("ffn.key.weight") and cfg.spike_ffn_hidden:
                std *= FFN_HIDDEN_KEY_GAIN
            v = normal(shape, std)
        else:
            raise AssertionError("no init rule for " + name)
        new[name] = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(shape))
    model.load_state_dict(new)
    return model


def metadata_for(cfg, name, seed, tensors):
    md = {"general.architecture": cfg.architecture,
          "general.name": "qslm reference " + name,
          "general.provenance": "tests/reference/make_golden.py seed %d" % seed}
    md.update(cfg.to_metadata())
    types = {n: t for n, _, t in tensors}
    if all(t == "f32" for t in types.values()):
        md["quant.setting"] = "f32"
    else:
        md["quant.setting"] = json.dumps(types, separators=(",", ":"))
    return md


def check_run(qf, tokens):
    """Runs RNN mode; returns (steps, cls, rnn, rates, margins, problems)."""
    steps, cls, rnn = run_rnn(qf, tokens)
    cfg = rnn.cfg
    problems = []
    margins = {}
    rates = {}
    for sub, on in (("att", cfg.spike_att), ("ffn", cfg.spike_ffn),
                    ("ffn_hidden", cfg.spike_ffn_hidden)):
        if not on:
            continue
        h = torch.stack([torch.stack(s["h_" + sub]) for s in steps])   # (T, L, d)
        margins["lif_" + sub] = float((h - cfg.threshold).abs().min())
        s = torch.stack([torch.stack(st["spikes_" + sub]) for st in steps])
        rates[sub] = [float(x) for x in s.mean((0, 2))]
        for i, r in enumerate(rates[sub]):
            if not RATE_LO <= r <= RATE_HI:
                problems.append("%s rate %.3f in layer %d" % (sub, r, i))
    if cfg.spike_emb:
        e = torch.stack([s["emb"] for s in steps])
        margins["emb"] = float(e.abs().min())
        rates["emb"] = float((e >= 0).float().mean())
    for k, m in margins.items():
        if m <= MARGIN:
            problems.append("margin %s %.2g" % (k, m))
    return steps, cls, rnn, rates, margins, problems


def f9(x):
    """A float32 value as the shortest decimal (at most 9 digits) that reads back exactly."""
    x = float(np.float32(x))
    if not math.isfinite(x):
        raise ValueError("non-finite value in golden output")
    for digits in range(6, 10):
        s = "%.*g" % (digits, x)
        if float(np.float32(float(s))) == x:
            return s
    return "%.9g" % x


def floats(t):
    return [f9(x) for x in t.reshape(-1).tolist()]


class Raw(str):
    """A pre-formatted JSON number."""


def dump(obj, indent=0):
    """JSON with nested dicts indented and every list of scalars on one line."""
    pad = " " * indent
    if isinstance(obj, Raw):
        return str(obj)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = ['%s  %s: %s' % (pad, json.dumps(k), dump(v, indent + 2)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return "[" + ", ".join(dump(v, indent) for v in obj) + "]"
        items = [pad + "  " + dump(v, indent + 2) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        return f9(obj)
    return json.dumps(obj)


def raw_floats(t):
    return [Raw(s) for s in floats(t)]


def golden_for(name, qf, seed, steps, cls, rnn, rates, margins, diffs, extra=None):
    cfg = rnn.cfg
    g = {"model": name + ".qslm",
         "generator": "tests/reference/make_golden.py",
         "seed": seed,
         "tokens": TOKENS,
         "tolerance": TOLERANCE,
         "spike_rates": rates,
         "min_margin": {k: Raw(f9(v)) for k, v in margins.items()},
         "rnn_vs_gpt_max_diff": {mode: {k: Raw("%.3g" % v) for k, v in d.items()}
                                 for mode, d in diffs.items()}}
    if extra:
        g.update(extra)
    out_steps = []
    for tok, s in zip(TOKENS, steps):
        st = {"token": tok}
        if cfg.head_lm:
            st["logits"] = raw_floats(s["logits"])
        if cfg.spike_att:
            st["spikes_att"] = [[int(v) for v in x.tolist()] for x in s["spikes_att"]]
        if cfg.spike_ffn:
            st["spikes_ffn"] = [[int(v) for v in x.tolist()] for x in s["spikes_ffn"]]
        if cfg.spike_ffn_hidden:
            st["spikes_ffn_hidden"] = [[int(v) for v in x.tolist()]
                                       for x in s["spikes_ffn_hidden"]]
        out_steps.append(st)
    g["steps"] = out_steps
    if cls is not None:
        g["cls_logits"] = raw_floats(cls)
    g["final_state"] = [{k: raw_floats(rnn.state[i][k]) for k in state_keys(cfg)}
                        for i in range(cfg.n_layer)]
    return g


def write_text(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def find_model(name, kw, base_seed, also_f16=False):
    cfg = config_for(kw)
    for seed in range(base_seed, base_seed + MAX_TRIES):
        model = build(cfg, seed)
        ok = True
        runs = {}
        for mtype in (("f32", "f16") if also_f16 else ("f32",)):
            tensors = model.qslm_tensors(mtype)
            blob = encode_qslm(metadata_for(cfg, name, seed, tensors), tensors)
            qf = decode_qslm(blob, name)
            res = check_run(qf, TOKENS)
            if res[-1]:
                ok = False
                break
            runs[mtype] = (tensors, res)
        if ok:
            return cfg, seed, runs
    raise SystemExit("%s: no seed in %d..%d meets the margin and rate rules"
                     % (name, base_seed, base_seed + MAX_TRIES - 1))


def emit(name, cfg, seed, tensors, extra=None):
    path = os.path.join(DATA_DIR, name + ".qslm")
    size = write_qslm(path, metadata_for(cfg, name, seed, tensors), tensors)
    qf = read_qslm(path)                     # the golden comes from the file as written
    steps, cls, rnn, rates, margins, problems = check_run(qf, TOKENS)
    assert not problems, problems
    diffs = compare_rnn_gpt(qf, TOKENS)
    g = golden_for(name, qf, seed, steps, cls, rnn, rates, margins, diffs, extra)
    gpath = os.path.join(DATA_DIR, name + ".golden.json")
    write_text(gpath, dump(g) + "\n")
    # The golden file must parse back as plain JSON.
    with open(gpath) as f:
        json.load(f)
    print("%-14s seed %d  %7d B model  %7d B golden  rates %s  margins %s  rnn-gpt %s"
          % (name, seed, size, os.path.getsize(gpath),
             {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3))
              for k, v in rates.items()},
             {k: "%.2g" % v for k, v in margins.items()},
             "%.2g" % max(max(d.values()) for d in diffs.values())))
    return steps, cls, rnn


def main():
    torch.set_num_threads(1)
    os.makedirs(DATA_DIR, exist_ok=True)
    for name, kw, base in MODELS:
        cfg, seed, runs = find_model(name, kw, base, also_f16=(name == F16_OF))
        steps32, _, rnn32 = emit(name, cfg, seed, runs["f32"][0])
        if name == F16_OF:
            tensors16 = runs["f16"][0]
            # Golden of the f16 model, computed from the f16-rounded weights (as stored).
            qf16 = decode_qslm(encode_qslm(metadata_for(cfg, name, seed, tensors16), tensors16))
            steps16, _, _ = run_rnn(qf16, TOKENS)
            ldiff = max(float((a["logits"] - b["logits"]).abs().max())
                        for a, b in zip(steps16, steps32))
            flips = sum(int((x != y).sum()) for a, b in zip(steps16, steps32)
                        for sub in ("spikes_att", "spikes_ffn")
                        for x, y in zip(a[sub], b[sub]))
            extra = {"f16_tensors": "every 2-D matrix (emb, att/ffn projections, head) is f16; "
                                    "1-D tensors (LayerNorm, time_*) are f32",
                     "vs_f32_model": {"model": name + ".qslm",
                                      "logits_max_abs_diff": Raw("%.3g" % ldiff),
                                      "spike_flips": flips}}
            emit(name + "_f16", cfg, seed, tensors16, extra)
            print("%-14s f16 vs f32 logits max abs diff %.3g, %d spike flips"
                  % (name + "_f16", ldiff, flips))
    return 0


if __name__ == "__main__":
    sys.exit(main())
