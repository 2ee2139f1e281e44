#!/usr/bin/python3
"""spikegpt_ref.py: the PyTorch reference of the SpikeGPT forward pass in RNN mode.

Run by hand, not in CI (it needs Debian's python3-torch):

    /usr/bin/python3 tests/reference/spikegpt_ref.py [model.qslm ...]

With no arguments it checks every tests/data/reference/*.qslm: it runs the model token by token
(RNN mode, below) and as a whole sequence (GPT mode, models/train/spikegpt_model.py, the
formulation SpikeGPT trains with) and asserts that both give the same logits, classifier
logits, spikes and final state (logits within 1e-5).

RNN mode follows ridgerchu/SpikeGPT src/model_run.py (RWKV_RNN) in float32. The C runtime
implements exactly these definitions.

State per layer i (float32, length d): att_xx, aa, bb, pp (pp starts at -1e30, the others at 0),
ffn_xx, v_att, v_ffn (the LIF membrane potentials of the two sub-blocks, start 0); with
spike.ffn_hidden also v_ffn_hidden (length n_ffn, start 0), the hidden units' membranes.

Per token:
  x = emb.weight[token]
  if spike.emb: x = (x >= 0)                  spikingjelly's ATan forward: Heaviside, H(0) = 1
  for i in 0 .. n_layer-1:
    if i == 0: x = LN(x, blocks.0.ln0)
    time mix, on xa = LN(x, ln1):
      xk = xa*mk + att_xx*(1-mk); xv, xr likewise with time_mix_v, time_mix_r; att_xx = xa
      r = sigmoid(Wr @ xr); k = Wk @ xk; v = Wv @ xv; w = -exp(time_decay); u = time_first
      ww = u + k; p = max(pp, ww); e1 = exp(pp - p); e2 = exp(ww - p)
      a = e1*aa + e2*v; b = e1*bb + e2
      ww = pp + w; p = max(ww, k); e1 = exp(ww - p); e2 = exp(k - p)
      aa = e1*aa + e2*v; bb = e1*bb + e2; pp = p
      out = Wo @ (r * a / b)
      if rescale_layer N > 0: out *= 2^-(i // N)   (RWKV divides att.output.weight by 2^(i//N)
                                                    at load; the same, exactly, in float)
      if spike.att: H = v_att + (out - v_att) / tau; S = (H >= theta); v_att = H * (1 - S); out = S
      x = x + out
    channel mix, on xf = LN(x, ln2):
      xk = xf*mk + ffn_xx*(1-mk); xr = xf*mr + ffn_xx*(1-mr); ffn_xx = xf
      r = sigmoid(Wr @ xr); kk = relu(Wk @ xk)^2; out = r * (Wv @ kk)
      with spike.ffn_hidden instead: k = Wk @ xk (n_ffn values, no relu, no square);
        H = v_ffn_hidden + (k - v_ffn_hidden) / tau; s = (H >= theta); v_ffn_hidden = H * (1 - s)
        out = r * (Wv @ s)          Wv is (d, n_ffn) here, nn.Linear's layout; the file stores
                                    it transposed, (n_ffn, d), so Wv @ s = sum of the rows of the
                                    hidden units that fired (qslm_format transposes it back)
      if N > 0: out *= 2^-(i // N)
      if spike.ffn: LIF as above with v_ffn
      x = x + out
    if N > 0 and (i + 1) % N == 0: x = x / 2
  xo = LN(x, ln_out); logits = head.weight @ xo (if the model has an LM head)
  classifier (SpikeGPT SST-2 style), over a whole input: cls.weight @ mean_t(xo_t) + cls.bias
  LN is torch's F.layer_norm with eps 1e-5.

How this relates to model_run.py (ridgerchu/SpikeGPT 029f86f, checked against its own outputs
by make_upstream_golden.py and tests/runtime/test_upstream.c):
  * membranes: model_run.py creates one LIFNode per layer for each sub-block (mem1[i], mem2[i])
    when the state starts, carried over tokens, as here and as the training code's
    MultiStepLIFNode per Block.
  * embedding spike: model_run.py sends the embedding through ATan() (Heaviside) only when the
    vocab is 77; here it is the metadata flag spike.emb, which convert.py --upstream sets that way.
  * rescale: model_run.py always runs with RWKV_RESCALE_LAYER = 6; here it is
    model.rescale_layer (make_golden.py's models use 0, spike_rescale 1; convert.py --upstream
    writes 6 for SpikeGPT checkpoints).
"""

import glob
import re
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))

from qslm_format import read_qslm  # noqa: E402
from spikegpt_model import (PP_INIT, SpikeGPT, SpikeGPTConfig, state_keys, wkv_loop,  # noqa: E402
                            wkv_parallel)

DATA_DIR = os.path.join(ROOT, "tests", "data", "reference")
RNN_GPT_TOL = 1e-5


class RNNModel:
    """SpikeGPT in RNN mode, from the tensors of a .qslm file (all computed in float32)."""

    def __init__(self, qf):
        names = list(qf.tensors)
        self.cfg = SpikeGPTConfig.from_metadata(qf.metadata, names)
        self.w = {n: torch.from_numpy(qf.float32(n)) for n in names}
        for n in names:
            if ".time_" in n:
                self.w[n] = self.w[n].reshape(-1)
        self.reset()

    def reset(self):
        d = self.cfg.n_embd
        self.state = [{"att_xx": torch.zeros(d), "aa": torch.zeros(d), "bb": torch.zeros(d),
                       "pp": torch.full((d,), PP_INIT), "ffn_xx": torch.zeros(d),
                       "v_att": torch.zeros(d), "v_ffn": torch.zeros(d)}
                      for _ in range(self.cfg.n_layer)]
        if self.cfg.spike_ffn_hidden:
            for st in self.state:
                st["v_ffn_hidden"] = torch.zeros(self.cfg.n_ffn)
        self.xo_sum = None
        self.n_tokens = 0

    def _ln(self, x, name):
        return F.layer_norm(x, (self.cfg.n_embd,), self.w[name + ".weight"],
                            self.w[name + ".bias"], eps=1e-5)

    def _lif(self, out, st, key, rec):
        cfg = self.cfg
        v = st[key]
        h = v + (out - v) / cfg.tau
        s = (h >= cfg.threshold).float()
        st[key] = h * (1 - s)
        rec["h"].append(h)
        return s

    def step(self, token):
        """One token. Returns a dict: logits (or None), spikes_att / spikes_ffn /
        spikes_ffn_hidden (per layer; empty when that spike is off), h_att / h_ffn /
        h_ffn_hidden (LIF potentials before the threshold), emb (the embedding row before its
        spike)."""
        cfg, w = self.cfg, self.w
        x = w["emb.weight"][token]
        res = {"emb": x.clone(), "spikes_att": [], "spikes_ffn": [], "spikes_ffn_hidden": [],
               "h_att": [], "h_ffn": [], "h_ffn_hidden": []}
        if cfg.spike_emb:
            x = (x >= 0).float()
        for i in range(cfg.n_layer):
            st, p = self.state[i], "blocks.%d." % i
            scale = cfg.layer_scale(i)
            if i == 0:
                x = self._ln(x, p + "ln0")

            # time mix
            xa = self._ln(x, p + "ln1")
            mk, mv, mr = (w[p + "att.time_mix_" + c] for c in "kvr")
            xk = xa * mk + st["att_xx"] * (1 - mk)
            xv = xa * mv + st["att_xx"] * (1 - mv)
            xr = xa * mr + st["att_xx"] * (1 - mr)
            st["att_xx"] = xa
            r = torch.sigmoid(w[p + "att.receptance.weight"] @ xr)
            k = w[p + "att.key.weight"] @ xk
            v = w[p + "att.value.weight"] @ xv
            tw = -torch.exp(w[p + "att.time_decay"])
            u = w[p + "att.time_first"]
            aa, bb, pp = st["aa"], st["bb"], st["pp"]
            ww = u + k
            q = torch.maximum(pp, ww)
            e1 = torch.exp(pp - q)
            e2 = torch.exp(ww - q)
            a = e1 * aa + e2 * v
            b = e1 * bb + e2
            ww = pp + tw
            q = torch.maximum(ww, k)
            e1 = torch.exp(ww - q)
            e2 = torch.exp(k - q)
            st["aa"] = e1 * aa + e2 * v
            st["bb"] = e1 * bb + e2
            st["pp"] = q
            out = w[p + "att.output.weight"] @ (r * a / b)
            if scale != 1.0:
                out = out * scale
            if cfg.spike_att:
                rec = {"h": res["h_att"]}
                out = self._lif(out, st, "v_att", rec)
                res["spikes_att"].append(out)
            x = x + out

            # channel mix
            xf = self._ln(x, p + "ln2")
            mk, mr = w[p + "ffn.time_mix_k"], w[p + "ffn.time_mix_r"]
            xk = xf * mk + st["ffn_xx"] * (1 - mk)
            xr = xf * mr + st["ffn_xx"] * (1 - mr)
            st["ffn_xx"] = xf
            r = torch.sigmoid(w[p + "ffn.receptance.weight"] @ xr)
            if cfg.spike_ffn_hidden:
                rec = {"h": res["h_ffn_hidden"]}
                kk = self._lif(w[p + "ffn.key.weight"] @ xk, st, "v_ffn_hidden", rec)
                res["spikes_ffn_hidden"].append(kk)
            else:
                kk = torch.square(torch.relu(w[p + "ffn.key.weight"] @ xk))
            out = r * (w[p + "ffn.value.weight"] @ kk)
            if scale != 1.0:
                out = out * scale
            if cfg.spike_ffn:
                rec = {"h": res["h_ffn"]}
                out = self._lif(out, st, "v_ffn", rec)
                res["spikes_ffn"].append(out)
            x = x + out
            if cfg.rescale_layer > 0 and (i + 1) % cfg.rescale_layer == 0:
                x = x / 2

        xo = self._ln(x, "ln_out")
        self.xo_sum = xo.clone() if self.xo_sum is None else self.xo_sum + xo
        self.n_tokens += 1
        res["logits"] = w["head.weight"] @ xo if cfg.head_lm else None
        res["xo"] = xo
        return res

    def classify(self):
        """Classifier logits over every token since reset(): cls.weight @ mean(xo) + cls.bias."""
        if self.cfg.n_classes <= 0:
            return None
        mean = self.xo_sum / self.n_tokens
        return self.w["cls.weight"] @ mean + self.w["cls.bias"]


def run_rnn(qf, tokens):
    """Runs tokens through RNN mode. Returns (per-step results, classifier logits, model)."""
    m = RNNModel(qf)
    steps = [m.step(t) for t in tokens]
    return steps, m.classify(), m


def run_gpt(qf, tokens, wkv=wkv_loop):
    """Runs tokens as one sequence through GPT mode (SpikeGPT module loaded from the file)."""
    # The module has one classifier, head 0 (cls.*); a file's further heads (cls.N.*, N >= 1) are
    # linear maps of the same mean feature, checked per head in RNN mode (make_heads.py).
    tensors = {n: t for n, t in qf.tensors.items() if not re.fullmatch(r"cls\.\d+\.(weight|bias)", n)}
    cfg = SpikeGPTConfig.from_metadata(qf.metadata, list(tensors))
    model = SpikeGPT(cfg)
    model.load_qslm_tensors(tensors)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([list(tokens)]), trace=True, wkv=wkv)


def _maxdiff(a, b):
    return float((a - b).abs().max()) if a.numel() else 0.0


def compare_rnn_gpt(qf, tokens):
    """Asserts RNN mode == GPT mode (both WKV forms) on tokens. Returns the max differences."""
    steps, cls_rnn, rnn = run_rnn(qf, tokens)
    cfg = rnn.cfg
    diffs = {}
    for label, wkv in (("loop", wkv_loop), ("parallel", wkv_parallel)):
        g = run_gpt(qf, tokens, wkv)
        d = {}
        if cfg.head_lm:
            rl = torch.stack([s["logits"] for s in steps])
            d["logits"] = _maxdiff(rl, g["logits"][0])
        if cfg.n_classes:
            d["cls_logits"] = _maxdiff(cls_rnn, g["cls_logits"][0])
        for i in range(cfg.n_layer):
            lt = g["trace"]["layers"][i]
            for sub, on in (("att", cfg.spike_att), ("ffn", cfg.spike_ffn),
                            ("ffn_hidden", cfg.spike_ffn_hidden)):
                if on:
                    rs = torch.stack([s["spikes_" + sub][i] for s in steps])
                    flips = int((rs != lt["s_" + sub][0]).sum())
                    assert flips == 0, "%s: %s spikes of layer %d differ in %d places" % (
                        label, sub, i, flips)
        st = 0.0
        for i in range(cfg.n_layer):
            for key in state_keys(cfg):
                a, b = rnn.state[i][key], g["state"][i][key][0]
                st = max(st, float(((a - b).abs() / b.abs().clamp_min(1.0)).max()))
        d["state_rel"] = st
        for key, val in d.items():
            assert val < RNN_GPT_TOL, "%s: RNN vs GPT (%s WKV) %s differ by %g" % (
                qf.path, label, key, val)
        diffs[label] = d
    return diffs


def main(argv):
    torch.set_num_threads(1)
    paths = argv or sorted(glob.glob(os.path.join(DATA_DIR, "*.qslm")))
    if not paths:
        print("no models; run tests/reference/make_golden.py first")
        return 1
    import json
    for path in paths:
        qf = read_qslm(path)
        golden = os.path.splitext(path)[0] + ".golden.json"
        if os.path.exists(golden):
            with open(golden) as f:
                tokens = json.load(f)["tokens"]
        else:
            tokens = list(range(min(16, int(qf.metadata["model.vocab_size"]))))
        diffs = compare_rnn_gpt(qf, tokens)
        print("%s: RNN == GPT: %s" % (os.path.relpath(path, ROOT), diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
