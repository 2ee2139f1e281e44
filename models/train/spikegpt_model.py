"""spikegpt_model.py: SpikeGPT in GPT mode (a whole sequence at once), in PyTorch, on the CPU.

This is the formulation SpikeGPT trains with (ridgerchu/SpikeGPT, src/model.py): RWKV-4 blocks
whose time-mix (SRWKV) and channel-mix (SRFFN) outputs pass through a multi-step LIF neuron
(spikingjelly's MultiStepLIFNode, tau 2, threshold 1, hard reset to 0, ATan surrogate with
alpha 2) before they are added to the residual stream. Parameter names are SpikeGPT's, so a
state_dict maps one to one onto the tensors of a .qslm file (runtime/FORMAT.md).

Differences from SpikeGPT's training code, all deliberate:
  * The WKV operator is a sequential loop over T on the CPU (the same numerically stable
    recurrence as SpikeGPT's CUDA kernel cuda/wkv_cuda.cu), not a CUDA kernel. wkv_parallel() is
    an equivalent closed form (a T x T weighting per channel), faster for short chunks.
  * The state can be carried between chunks (time-shift rows, WKV accumulators, LIF membranes),
    which makes the model's forward equal to its RNN mode token by token
    (tests/reference/spikegpt_ref.py checks it).
  * Options the runtime supports: spikes can be switched off per sub-block (RWKV-4 is SpikeGPT
    with every spike off), an optional spike on the embedding, RWKV's rescale_layer, an LM head
    and/or a classifier head (mean over tokens of ln_out's output, then cls: SpikeGPT's SST-2
    style classification), and spike_ffn_hidden: the channel-mix hidden activation is a LIF
    spike of k = key(xk) (a membrane per hidden unit and layer, same tau, threshold, reset and
    surrogate) instead of relu(k)^2, so ffn.value reads a {0,1} vector.
  * No dropout (SpikeGPT's Block has Dropout(0.03)); a training script can add it outside.

The per-token definitions (what the C runtime implements) are written out in
tests/reference/spikegpt_ref.py.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5
PP_INIT = -1e30  # the WKV running maximum before the first token


class SpikeGPTConfig:
    """Model hyper-parameters; field names follow the .qslm metadata keys."""

    def __init__(self, n_layer, n_embd, vocab_size, n_ffn=None, architecture="spikegpt",
                 spike_att=None, spike_ffn=None, spike_emb=False, spike_ffn_hidden=False,
                 tau=2.0, threshold=1.0, rescale_layer=0, head_lm=True, n_classes=0,
                 surrogate_alpha=2.0, detach_reset=False):
        if architecture not in ("spikegpt", "rwkv4"):
            raise ValueError("architecture must be spikegpt or rwkv4, not %r" % architecture)
        spiking = architecture == "spikegpt"
        self.n_layer = int(n_layer)
        self.n_embd = int(n_embd)
        self.vocab_size = int(vocab_size)
        self.n_ffn = int(n_ffn) if n_ffn else 4 * self.n_embd
        self.architecture = architecture
        self.spike_att = spiking if spike_att is None else bool(spike_att)
        self.spike_ffn = spiking if spike_ffn is None else bool(spike_ffn)
        self.spike_emb = bool(spike_emb)
        self.spike_ffn_hidden = bool(spike_ffn_hidden)
        self.tau = float(tau)
        self.threshold = float(threshold)
        self.rescale_layer = int(rescale_layer)
        self.head_lm = bool(head_lm)
        self.n_classes = int(n_classes)
        self.surrogate_alpha = float(surrogate_alpha)  # training only
        self.detach_reset = bool(detach_reset)          # training only (spikingjelly's option)
        if min(self.n_layer, self.n_embd, self.vocab_size, self.n_ffn) < 1 or self.tau <= 0:
            raise ValueError("bad model dimensions or tau")

    def __repr__(self):
        return "SpikeGPTConfig(%s)" % ", ".join("%s=%r" % kv for kv in vars(self).items())

    def to_metadata(self):
        """The FORMAT.md metadata keys describing this model, in a fixed order. Plain Python
        types map onto the key's .qslm type (int -> u64, float -> f64, bool -> bool)."""
        return {
            "general.architecture": self.architecture,
            "model.n_layer": self.n_layer,
            "model.n_embd": self.n_embd,
            "model.n_ffn": self.n_ffn,
            "model.vocab_size": self.vocab_size,
            "model.rescale_layer": self.rescale_layer,
            "head.lm": self.head_lm,
            "head.n_classes": self.n_classes,
            "spike.tau": self.tau,
            "spike.threshold": self.threshold,
            "spike.att": self.spike_att,
            "spike.ffn": self.spike_ffn,
            "spike.emb": self.spike_emb,
            "spike.ffn_hidden": self.spike_ffn_hidden,
        }

    @classmethod
    def from_metadata(cls, md, tensor_names=()):
        """A config from .qslm metadata, with FORMAT.md's defaults for absent keys."""
        arch = md["general.architecture"]
        spiking = arch == "spikegpt"
        d = int(md["model.n_embd"])
        return cls(n_layer=md["model.n_layer"], n_embd=d, vocab_size=md["model.vocab_size"],
                   n_ffn=md.get("model.n_ffn", 4 * d), architecture=arch,
                   spike_att=md.get("spike.att", spiking), spike_ffn=md.get("spike.ffn", spiking),
                   spike_emb=md.get("spike.emb", False),
                   spike_ffn_hidden=md.get("spike.ffn_hidden", False),
                   tau=md.get("spike.tau", 2.0), threshold=md.get("spike.threshold", 1.0),
                   rescale_layer=md.get("model.rescale_layer", 0),
                   head_lm=md.get("head.lm", "head.weight" in tensor_names),
                   n_classes=md.get("head.n_classes", 0))

    def layer_scale(self, i):
        """2^-(i // rescale_layer): the factor on block i's sub-block outputs (1 when off)."""
        return 1.0 if self.rescale_layer <= 0 else 2.0 ** -(i // self.rescale_layer)


# ----------------------------------------------------------------------------- spiking neuron


class ATanHeaviside(torch.autograd.Function):
    """Heaviside step with spikingjelly's ATan surrogate gradient.

    forward: H(x) = 1 if x >= 0 else 0 (H(0) = 1, as spikingjelly's heaviside).
    backward: dH/dx ~= (alpha / 2) / (1 + (pi / 2 * alpha * x)^2).
    """

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        sg = (alpha / 2) / (1 + (math.pi / 2 * alpha * x).square())
        return grad_out * sg, None


def heaviside(x, alpha=2.0):
    """A {0,1} spike where x >= 0; ATan surrogate gradient in training."""
    return ATanHeaviside.apply(x, alpha)


def lif_multistep(x, v, tau, threshold, alpha=2.0, detach_reset=False, trace=None):
    """spikingjelly's MultiStepLIFNode (decay_input, hard reset to 0) over x of shape (B, T, C).

    Per step: H = v + (x_t - v) / tau; S = H >= threshold; v = H * (1 - S).
    v: the membrane before the first step, (B, C). Returns (spikes (B, T, C), final v).
    If trace is a list, H of every step is appended to it (for the margin check)."""
    out = []
    for t in range(x.shape[1]):
        h = v + (x[:, t] - v) / tau
        if trace is not None:
            trace.append(h.detach())
        s = heaviside(h - threshold, alpha)
        v = h * (1 - (s.detach() if detach_reset else s))
        out.append(s)
    return torch.stack(out, 1), v


# ----------------------------------------------------------------------------------- WKV


def wkv_loop(w, u, k, v, aa, bb, pp):
    """RWKV-4's WKV over a sequence, as the stable recurrence of SpikeGPT's CUDA kernel.

    w = -exp(time_decay), u = time_first: (C,); k, v: (B, T, C); aa, bb, pp: (B, C) the state
    before the first step. Returns (y (B, T, C), aa, bb, pp) with the state after the last step."""
    ys = []
    for t in range(k.shape[1]):
        kt, vt = k[:, t], v[:, t]
        ww = u + kt
        p = torch.maximum(pp, ww)
        e1 = torch.exp(pp - p)
        e2 = torch.exp(ww - p)
        ys.append((e1 * aa + e2 * vt) / (e1 * bb + e2))
        ww = pp + w
        p = torch.maximum(ww, kt)
        e1 = torch.exp(ww - p)
        e2 = torch.exp(kt - p)
        aa = e1 * aa + e2 * vt
        bb = e1 * bb + e2
        pp = p
    return torch.stack(ys, 1), aa, bb, pp


def wkv_parallel(w, u, k, v, aa, bb, pp):
    """The same WKV in closed form, all T outputs at once (memory B*T*T*C):

        y_t = (sum_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u + k_t} v_t + e^{pp + t w} aa)
            / (sum_{i<t} e^{(t-1-i)w + k_i}     + e^{u + k_t}     + e^{pp + t w} bb)

    with every exponent shifted by its maximum. Same arguments and results as wkv_loop."""
    B, T, C = k.shape
    t_idx = torch.arange(T, dtype=k.dtype)
    lag = (t_idx.view(T, 1) - 1 - t_idx.view(1, T))                      # (t, i): t-1-i
    logit = lag.view(1, T, T, 1) * w + k.view(B, 1, T, C)                # (B, t, i, C)
    diag = torch.eye(T, dtype=torch.bool).view(1, T, T, 1)
    logit = torch.where(diag, (u + k).view(B, T, 1, C).expand(B, T, T, C), logit)
    past = (lag >= -1).view(1, T, T, 1)                                  # i <= t
    logit = logit.masked_fill(~past, float("-inf"))
    s = pp.view(B, 1, C) + t_idx.view(1, T, 1) * w                       # state's exponent at t
    m = torch.maximum(logit.amax(2), s).detach()
    e = torch.exp(logit - m.unsqueeze(2))
    es = torch.exp(s - m)
    y = ((e * v.view(B, 1, T, C)).sum(2) + es * aa.view(B, 1, C)) / (e.sum(2) + es * bb.view(B, 1, C))
    # State after the last step: the terms k_i + (T-1-i) w and pp + T w.
    last = (T - 1 - t_idx).view(1, T, 1) * w + k                         # (B, i, C)
    s_end = pp + T * w
    p_end = torch.maximum(last.amax(1), s_end)
    e_end = torch.exp(last - p_end.unsqueeze(1))
    es_end = torch.exp(s_end - p_end)
    aa_end = (e_end * v).sum(1) + es_end * aa
    bb_end = e_end.sum(1) + es_end * bb
    return y, aa_end, bb_end, p_end


# ------------------------------------------------------------------------------------ blocks


def _time_shift(x, prev):
    """SpikeGPT's time_shift, nn.ZeroPad2d((0, 0, 1, -1)): row t gets x_{t-1}; row 0 gets prev
    (zeros at the start of a sequence, the previous chunk's last row when the state is carried)."""
    return torch.cat([prev.unsqueeze(1), x[:, :-1]], 1)


class TimeMix(nn.Module):
    """SRWKV: RWKV-4 time mixing (SpikeGPT's RWKV_TimeMix)."""

    def __init__(self, config, layer_id):
        super().__init__()
        d, n_layer = config.n_embd, config.n_layer
        with torch.no_grad():  # SpikeGPT's "fancy init" of the time parameters
            ratio_0_to_1 = layer_id / max(n_layer - 1, 1)
            ratio_1_to_almost0 = 1.0 - layer_id / n_layer
            h = torch.arange(d, dtype=torch.float32)
            decay_speed = -5 + 8 * (h / max(d - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1)
            zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(d)], dtype=torch.float32) * 0.5
            x = (h / d).view(1, 1, d)
            self.time_decay = nn.Parameter(decay_speed)
            self.time_first = nn.Parameter(torch.ones(d) * math.log(0.3) + zigzag)
            self.time_mix_k = nn.Parameter(torch.pow(x, ratio_1_to_almost0))
            self.time_mix_v = nn.Parameter(torch.pow(x, ratio_1_to_almost0) + 0.3 * ratio_0_to_1)
            self.time_mix_r = nn.Parameter(torch.pow(x, 0.5 * ratio_1_to_almost0))
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.receptance = nn.Linear(d, d, bias=False)
        self.output = nn.Linear(d, d, bias=False)

    def forward(self, x, st, wkv=wkv_loop):
        """x: ln1's output (B, T, C). Updates st['att_xx'], st['aa'], st['bb'], st['pp']."""
        xx = _time_shift(x, st["att_xx"])
        xk = x * self.time_mix_k + xx * (1 - self.time_mix_k)
        xv = x * self.time_mix_v + xx * (1 - self.time_mix_v)
        xr = x * self.time_mix_r + xx * (1 - self.time_mix_r)
        k = self.key(xk)
        v = self.value(xv)
        sr = torch.sigmoid(self.receptance(xr))
        y, st["aa"], st["bb"], st["pp"] = wkv(-torch.exp(self.time_decay), self.time_first,
                                              k, v, st["aa"], st["bb"], st["pp"])
        st["att_xx"] = x[:, -1]
        return self.output(sr * y)


class ChannelMix(nn.Module):
    """SRFFN: RWKV-4 channel mixing (SpikeGPT's RWKV_ChannelMix), hidden width n_ffn."""

    def __init__(self, config, layer_id):
        super().__init__()
        d = config.n_embd
        with torch.no_grad():
            ratio_1_to_almost0 = 1.0 - layer_id / config.n_layer
            x = (torch.arange(d, dtype=torch.float32) / d).view(1, 1, d)
            self.time_mix_k = nn.Parameter(torch.pow(x, ratio_1_to_almost0))
            self.time_mix_r = nn.Parameter(torch.pow(x, ratio_1_to_almost0))
        self.key = nn.Linear(d, config.n_ffn, bias=False)
        self.receptance = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(config.n_ffn, d, bias=False)
        self.config = config

    def forward(self, x, st, trace=None):
        """x: ln2's output (B, T, C). Updates st['ffn_xx'] (and st['v_ffn_hidden'], the hidden
        LIF membranes (B, n_ffn), with spike_ffn_hidden; its potentials and spikes go into
        trace['h_ffn_hidden'], trace['s_ffn_hidden'])."""
        xx = _time_shift(x, st["ffn_xx"])
        xk = x * self.time_mix_k + xx * (1 - self.time_mix_k)
        xr = x * self.time_mix_r + xx * (1 - self.time_mix_r)
        st["ffn_xx"] = x[:, -1]
        if self.config.spike_ffn_hidden:
            k = _lif(self.config, self.key(xk), st, "v_ffn_hidden", trace, "ffn_hidden")
        else:
            k = torch.square(torch.relu(self.key(xk)))
        return torch.sigmoid(self.receptance(xr)) * self.value(k)


def _lif(c, x, st, key, trace, name):
    """The multi-step LIF of config c over x (B, T, C) from membrane st[key] (updated). With a
    trace dict, records the potentials before the threshold (h_<name>) and the spikes (s_<name>).
    Calls the module-level lif_multistep at call time (train.py swaps in a faster one)."""
    hs = [] if trace is not None else None
    s, st[key] = lif_multistep(x, st[key], c.tau, c.threshold, c.surrogate_alpha,
                               c.detach_reset, hs)
    if trace is not None:
        trace["h_" + name] = torch.stack(hs, 1)
        trace["s_" + name] = s.detach()
    return s


class Block(nn.Module):
    def __init__(self, config, layer_id):
        super().__init__()
        self.config = config
        self.layer_id = layer_id
        d = config.n_embd
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(d, eps=LN_EPS)
        self.ln1 = nn.LayerNorm(d, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(d, eps=LN_EPS)
        self.att = TimeMix(config, layer_id)
        self.ffn = ChannelMix(config, layer_id)

    def _lif(self, out, st, key, trace, name):
        return _lif(self.config, out, st, key, trace, name)

    def forward(self, x, st, trace=None, wkv=wkv_loop):
        c = self.config
        scale = c.layer_scale(self.layer_id)
        if self.layer_id == 0:
            x = self.ln0(x)
        out = self.att(self.ln1(x), st, wkv)
        if scale != 1.0:
            out = out * scale
        if c.spike_att:
            out = self._lif(out, st, "v_att", trace, "att")
        x = x + out
        out = self.ffn(self.ln2(x), st, trace)
        if scale != 1.0:
            out = out * scale
        if c.spike_ffn:
            out = self._lif(out, st, "v_ffn", trace, "ffn")
        x = x + out
        if c.rescale_layer > 0 and (self.layer_id + 1) % c.rescale_layer == 0:
            x = x / 2
        return x


STATE_KEYS = ("att_xx", "aa", "bb", "pp", "ffn_xx", "v_att", "v_ffn")
FFN_HIDDEN_STATE_KEY = "v_ffn_hidden"  # (n_ffn,) per layer, only with spike_ffn_hidden


def state_keys(config):
    """The per-layer state's keys for this model, in order: STATE_KEYS, then v_ffn_hidden when
    the channel-mix hidden activation spikes."""
    return STATE_KEYS + ((FFN_HIDDEN_STATE_KEY,) if config.spike_ffn_hidden else ())


class SpikeGPT(nn.Module):
    """SpikeGPT / RWKV-4 in GPT mode. forward(idx) -> dict with 'logits' (B, T, vocab) if the
    model has an LM head, 'cls_logits' (B, n_classes) if it has a classifier, 'state' (the
    per-layer state after the last token, to pass back in for the next chunk) and, with
    trace=True, 'trace' (per layer: LIF pre-threshold potentials h_att/h_ffn and spikes
    s_att/s_ffn, (B, T, C), with spike_ffn_hidden also h_ffn_hidden/s_ffn_hidden, (B, T, n_ffn);
    and 'emb', the embedding rows before the embedding spike)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        d = config.n_embd
        self.emb = nn.Embedding(config.vocab_size, d)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_out = nn.LayerNorm(d, eps=LN_EPS)
        if config.head_lm:
            self.head = nn.Linear(d, config.vocab_size, bias=False)
        if config.n_classes > 0:
            self.cls = nn.Linear(d, config.n_classes, bias=True)

    def initial_state(self, batch):
        """The state before the first token: zeros, and pp = -1e30 (keys: state_keys(config))."""
        d = self.config.n_embd
        z = lambda: torch.zeros(batch, d)
        out = []
        for _ in self.blocks:
            st = {"att_xx": z(), "aa": z(), "bb": z(), "pp": torch.full((batch, d), PP_INIT),
                  "ffn_xx": z(), "v_att": z(), "v_ffn": z()}
            if self.config.spike_ffn_hidden:
                st[FFN_HIDDEN_STATE_KEY] = torch.zeros(batch, self.config.n_ffn)
            out.append(st)
        return out

    def forward(self, idx, state=None, trace=False, cls_mask=None, wkv=wkv_loop):
        """idx: (B, T) token ids. state: from initial_state() or a previous call (not modified).
        cls_mask: optional (B, T) 0/1 weights for the classifier's mean over tokens."""
        B, T = idx.shape
        st = [dict(s) for s in (state if state is not None else self.initial_state(B))]
        x = self.emb(idx)
        tr = {"emb": x.detach(), "layers": []} if trace else None
        if self.config.spike_emb:
            x = heaviside(x, self.config.surrogate_alpha)
        for i, block in enumerate(self.blocks):
            ltr = {} if trace else None
            x = block(x, st[i], ltr, wkv)
            if trace:
                tr["layers"].append(ltr)
        xo = self.ln_out(x)
        res = {"state": st, "ln_out": xo}
        if self.config.head_lm:
            res["logits"] = self.head(xo)
        if self.config.n_classes > 0:
            if cls_mask is None:
                pooled = xo.mean(1)
            else:
                m = cls_mask.to(xo.dtype).unsqueeze(-1)
                pooled = (xo * m).sum(1) / m.sum(1).clamp_min(1)
            res["cls_logits"] = self.cls(pooled)
        if trace:
            res["trace"] = tr
        return res

    # ---------------------------------------------------------------- .qslm conversion

    def qslm_tensors(self, matrix_type="f32"):
        """[(name, array, type)] for write_qslm, in state_dict order: time parameters squeezed
        to (C,), 2-D weight matrices stored as matrix_type, everything else f32. Matrices are
        in nn.Linear's layout; with spike_ffn_hidden, write_qslm stores ffn.value transposed."""
        out = []
        for name, p in self.state_dict().items():
            p = p.detach().float()
            if ".time_" in name:
                p = p.reshape(-1)
            out.append((name, p.numpy(), matrix_type if p.dim() == 2 else "f32"))
        return out

    def load_qslm_tensors(self, tensors):
        """Loads {name: array} (as read_qslm gives, f16 or f32, nn.Linear layout) into the
        parameters, restoring the (1, 1, C) shape of the time_mix tensors. Every parameter must
        be present, with its module shape (a transposed ffn.value is refused, not reshaped)."""
        sd = self.state_dict()
        missing = [n for n in sd if n not in tensors]
        extra = [n for n in tensors if n not in sd]
        if missing or extra:
            raise KeyError("tensor mismatch: missing %s, unexpected %s" % (missing, extra))
        with torch.no_grad():
            for name, p in sd.items():
                a = tensors[name]
                if a.ndim >= 2 and tuple(a.shape) != tuple(p.shape):
                    raise ValueError("%s: shape %s, the module has %s"
                                     % (name, tuple(a.shape), tuple(p.shape)))
                v = torch.from_numpy(a.astype("float32")).reshape(p.shape)
                p.copy_(v)
