"""fastops.py: faster CPU training kernels for spikegpt_model.SpikeGPT (same maths).

* lif_multistep_fast: spikingjelly's MultiStepLIFNode (decay_input, hard reset to 0, ATan
  surrogate) as one autograd Function whose forward and backward are TorchScript loops over T,
  instead of an autograd graph of ~6 nodes per time step. Same spikes, same surrogate gradient as
  spikegpt_model.lif_multistep (checked by check_lif() below).
* wkv_chunked: RWKV-4's WKV as spikegpt_model.wkv_parallel (the closed form) over chunks of
  `chunk` tokens, carrying the state between chunks: memory B*chunk*chunk*C instead of B*T*T*C.

Use: spikegpt_model.lif_multistep = lif_multistep_fast; model(idx, wkv=wkv_chunked).
"""

import math

import torch

import spikegpt_model as sm


@torch.jit.script
def _lif_fwd(x, v, tau: float, threshold: float):
    T = x.shape[1]
    hs = torch.empty_like(x)
    ss = torch.empty_like(x)
    for t in range(T):
        h = v + (x[:, t] - v) / tau
        s = (h >= threshold).to(x.dtype)
        hs[:, t] = h
        ss[:, t] = s
        v = h * (1.0 - s)
    return ss, hs, v


@torch.jit.script
def _lif_bwd(gs, hs, ss, tau: float, threshold: float, alpha: float, detach_reset: bool):
    T = gs.shape[1]
    gx = torch.empty_like(gs)
    gv = torch.zeros_like(gs[:, 0])
    k = math.pi / 2.0 * alpha
    for i in range(T):
        t = T - 1 - i
        h = hs[:, t]
        s = ss[:, t]
        sg = (alpha / 2.0) / (1.0 + (k * (h - threshold)) ** 2)
        # v_t = h_t * (1 - s_t); s_t = H(h_t - threshold)
        gs_t = gs[:, t]
        if detach_reset:
            gh = gs_t * sg + gv * (1.0 - s)
        else:
            gs_t = gs_t - gv * h
            gh = gs_t * sg + gv * (1.0 - s)
        gx[:, t] = gh / tau
        gv = gh * (1.0 - 1.0 / tau)
    return gx, gv


class _LIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, tau, threshold, alpha, detach_reset):
        ss, hs, vT = _lif_fwd(x.contiguous(), v, float(tau), float(threshold))
        ctx.save_for_backward(hs, ss)
        ctx.cfg = (float(tau), float(threshold), float(alpha), bool(detach_reset))
        return ss, vT

    @staticmethod
    def backward(ctx, gs, gvT):
        hs, ss = ctx.saved_tensors
        tau, th, alpha, dr = ctx.cfg
        # gradient through the final membrane is ignored (it only feeds a later chunk's state)
        gx, gv0 = _lif_bwd(gs.contiguous(), hs, ss, tau, th, alpha, dr)
        return gx, gv0, None, None, None, None


def lif_multistep_fast(x, v, tau, threshold, alpha=2.0, detach_reset=False, trace=None):
    if trace is not None:
        return _orig_lif(x, v, tau, threshold, alpha, detach_reset, trace)
    s, vT = _LIF.apply(x, v, tau, threshold, alpha, detach_reset)
    return s, vT.detach()


_orig_lif = sm.lif_multistep


def make_wkv_chunked(chunk):
    def wkv_chunked(w, u, k, v, aa, bb, pp):
        T = k.shape[1]
        if T <= chunk:
            return sm.wkv_parallel(w, u, k, v, aa, bb, pp)
        ys = []
        for s in range(0, T, chunk):
            y, aa, bb, pp = sm.wkv_parallel(w, u, k[:, s:s + chunk], v[:, s:s + chunk], aa, bb, pp)
            ys.append(y)
        return torch.cat(ys, 1), aa, bb, pp
    return wkv_chunked


def check_lif():
    torch.manual_seed(0)
    x = (torch.randn(3, 40, 8) * 1.5 + 0.8).requires_grad_(True)
    v = torch.zeros(3, 8)
    for dr in (False, True):
        s1, v1 = _orig_lif(x, v, 2.0, 1.0, 2.0, dr)
        g = torch.randn_like(s1)
        (gx1,) = torch.autograd.grad((s1 * g).sum(), x)
        s2, v2 = lif_multistep_fast(x, v, 2.0, 1.0, 2.0, dr)
        (gx2,) = torch.autograd.grad((s2 * g).sum(), x)
        assert torch.equal(s1, s2) and torch.allclose(v1, v2)
        assert torch.allclose(gx1, gx2, atol=1e-5, rtol=1e-4), (gx1 - gx2).abs().max()
    w = -torch.exp(torch.randn(8))
    u = torch.randn(8)
    k = torch.randn(2, 40, 8)
    vv = torch.randn(2, 40, 8)
    z = torch.zeros(2, 8)
    pp = torch.full((2, 8), sm.PP_INIT)
    y1 = sm.wkv_loop(w, u, k, vv, z, z, pp)
    y2 = make_wkv_chunked(16)(w, u, k, vv, z, z, pp)
    for a, b in zip(y1, y2):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    print("fastops: LIF and chunked WKV agree with the reference")



# ------------------------------------------------------------ WKV with a hand-written backward


@torch.jit.script
def _wkv_fwd(w, u, k, v):
    """The stable recurrence from a zero state (aa = bb = 0, pp = -1e30). k, v: (B, T, C)."""
    B, T, C = k.shape[0], k.shape[1], k.shape[2]
    y = torch.empty_like(k)
    aa = torch.zeros(B, C, dtype=k.dtype)
    bb = torch.zeros(B, C, dtype=k.dtype)
    pp = torch.full((B, C), -1e30, dtype=k.dtype)
    for t in range(T):
        kt = k[:, t]
        vt = v[:, t]
        ww = u + kt
        p = torch.maximum(pp, ww)
        e1 = torch.exp(pp - p)
        e2 = torch.exp(ww - p)
        y[:, t] = (e1 * aa + e2 * vt) / (e1 * bb + e2)
        ww = pp + w
        p = torch.maximum(ww, kt)
        e1 = torch.exp(ww - p)
        e2 = torch.exp(kt - p)
        aa = e1 * aa + e2 * vt
        bb = e1 * bb + e2
        pp = p
    return y, aa, bb, pp


@torch.jit.script
def _wkv_bwd(w, u, k, v, y, gy):
    """RWKV-4's CUDA kernel_backward (BlinkDL/RWKV-LM, RWKV-v4/cuda/wkv_cuda.cu), over (B, C)."""
    B, T, C = k.shape[0], k.shape[1], k.shape[2]
    q = torch.empty_like(k)
    r = torch.empty_like(k)
    gk = torch.empty_like(k)
    gv = torch.empty_like(k)
    gw = torch.zeros(B, C, dtype=k.dtype)
    gu = torch.zeros(B, C, dtype=k.dtype)
    aa = torch.zeros(B, C, dtype=k.dtype)
    bb = torch.zeros(B, C, dtype=k.dtype)
    ga = torch.zeros(B, C, dtype=k.dtype)
    gb = torch.zeros(B, C, dtype=k.dtype)
    pp = torch.full((B, C), -1e30, dtype=k.dtype)
    for i in range(T):
        kk = k[:, i]
        vv = v[:, i]
        yy = y[:, i]
        ww = u + kk
        p = torch.maximum(pp, ww)
        e1 = torch.exp(pp - p)
        e2 = torch.exp(ww - p)
        qq = gy[:, i] / (e1 * bb + e2)
        gw = gw + (ga - gb * yy) * e1 * qq
        gu = gu + (vv - yy) * e2 * qq
        q[:, i] = qq
        r[:, i] = ww - p
        ww = w + pp
        p = torch.maximum(ww, kk)
        e1 = torch.exp(ww - p)
        e2 = torch.exp(kk - p)
        ga = e1 * (aa + ga)
        gb = e1 * (bb + gb)
        aa = e1 * aa + e2 * vv
        bb = e1 * bb + e2
        pp = p
    aa = torch.zeros(B, C, dtype=k.dtype)
    bb = torch.zeros(B, C, dtype=k.dtype)
    pp = torch.full((B, C), -1e30, dtype=k.dtype)
    for j in range(T):
        i = T - 1 - j
        kk = k[:, i]
        vv = v[:, i]
        yy = y[:, i]
        qq = q[:, i]
        rr = r[:, i]
        e1 = qq * torch.exp(rr)
        e2 = torch.exp(kk + pp)
        gk[:, i] = e1 * (vv - yy) + e2 * (aa * vv + bb)
        gv[:, i] = e1 + e2 * aa
        ww = w + pp
        www = rr - u - kk
        p = torch.maximum(ww, www)
        e1 = torch.exp(ww - p)
        e2 = qq * torch.exp(www - p)
        aa = e1 * aa + e2
        bb = e1 * bb - e2 * yy
        pp = p
    return gw.sum(0), gu.sum(0), gk, gv


class _WKV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, u, k, v):
        k = k.contiguous()
        v = v.contiguous()
        y, aa, bb, pp = _wkv_fwd(w, u, k, v)
        ctx.save_for_backward(w, u, k, v, y)
        return y, aa, bb, pp

    @staticmethod
    def backward(ctx, gy, gaa, gbb, gpp):
        w, u, k, v, y = ctx.saved_tensors
        gw, gu, gk, gv = _wkv_bwd(w, u, k, v, y, gy.contiguous())
        return gw, gu, gk, gv


def wkv_fused(w, u, k, v, aa, bb, pp):
    """WKV from a fresh state with a hand-written backward; other states fall back to the
    closed form in chunks. The returned final state carries no gradient."""
    fresh = bool((aa == 0).all()) and bool((bb == 0).all()) and bool((pp <= -1e29).all())
    if not fresh:
        return make_wkv_chunked(32)(w, u, k, v, aa, bb, pp)
    y, aa, bb, pp = _WKV.apply(w, u, k, v)
    return y, aa.detach(), bb.detach(), pp.detach()


def check_wkv_grad():
    torch.manual_seed(1)
    B, T, C = 2, 50, 6
    td = torch.randn(C, requires_grad=True)
    u = torch.randn(C, requires_grad=True)
    k = (torch.randn(B, T, C) * 2).requires_grad_(True)
    v = torch.randn(B, T, C, requires_grad=True)
    z = torch.zeros(B, C)
    pp = torch.full((B, C), sm.PP_INIT)
    g = torch.randn(B, T, C)
    y1 = sm.wkv_loop(-torch.exp(td), u, k, v, z, z, pp)[0]
    g1 = torch.autograd.grad((y1 * g).sum(), (td, u, k, v))
    y2 = wkv_fused(-torch.exp(td), u, k, v, z, z, pp)[0]
    g2 = torch.autograd.grad((y2 * g).sum(), (td, u, k, v))
    assert torch.allclose(y1, y2, atol=1e-5)
    for name, a, b in zip(("time_decay", "u", "k", "v"), g1, g2):
        err = (a - b).abs().max().item()
        assert err < 1e-3 * (1 + a.abs().max().item()), (name, err)
    print("fastops: fused WKV gradient agrees with autograd of the loop")


if __name__ == "__main__":
    check_lif()
    check_wkv_grad()
