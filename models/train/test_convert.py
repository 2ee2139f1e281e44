#!/usr/bin/python3
"""test_convert.py: tests of convert.py (run by hand; needs torch, so not in CI).

    /usr/bin/python3 models/train/test_convert.py [--skip-216m] [--ckpt PATH]

1. The real SpikeGPT-216M layout (vocab 50277, 18 layers, d 768, n_ffn 3072; ln0 on block 0
   only; time_decay/time_first (d,), time_mix (1, 1, d); no classifier), made here as a random
   state_dict of exactly those names and shapes: converted to f16 and to f32, read back with
   qslm_format.read_qslm, every tensor and every metadata key checked.
2. A small bf16 checkpoint in a {"state_dict": {"module.": ...}} wrapper with copy_mask and a
   classifier; and the refusals (head_q, a missing tensor, a wrong shape).
3. The trained checkpoint (--ckpt): converted with the tokenizer, read back and compared, then
   loaded in C: `.build/runtime/tools/qslm-eval` (scripts/build.sh) must run it on a piece of the SOTU test
   split and on the imdb sentences, and agree with eval_torch.py.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import convert  # noqa: E402
from qslm_format import read_qslm  # noqa: E402


def spikegpt_state_dict(n_layer, d, n_ffn, vocab, n_classes=0, dtype=torch.float32, seed=0):
    """A random state_dict with SpikeGPT's exact names, order and shapes (src/model.py)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(dtype)
    sd = {"emb.weight": r(vocab, d)}
    for i in range(n_layer):
        p = "blocks.%d." % i
        if i == 0:
            sd[p + "ln0.weight"], sd[p + "ln0.bias"] = r(d), r(d)
        sd[p + "ln1.weight"], sd[p + "ln1.bias"] = r(d), r(d)
        sd[p + "ln2.weight"], sd[p + "ln2.bias"] = r(d), r(d)
        sd[p + "att.time_decay"] = r(d)
        sd[p + "att.time_first"] = r(d)
        sd[p + "att.time_mix_k"] = r(1, 1, d)
        sd[p + "att.time_mix_v"] = r(1, 1, d)
        sd[p + "att.time_mix_r"] = r(1, 1, d)
        for n in ("key", "value", "receptance", "output"):
            sd[p + "att.%s.weight" % n] = r(d, d)
        sd[p + "ffn.time_mix_k"] = r(1, 1, d)
        sd[p + "ffn.time_mix_r"] = r(1, 1, d)
        sd[p + "ffn.key.weight"] = r(n_ffn, d)
        sd[p + "ffn.receptance.weight"] = r(d, d)
        sd[p + "ffn.value.weight"] = r(d, n_ffn)
    sd["ln_out.weight"], sd["ln_out.bias"] = r(d), r(d)
    sd["head.weight"] = r(vocab, d)
    if n_classes:
        sd["cls.weight"], sd["cls.bias"] = r(n_classes, d), r(n_classes)
    return sd


def check_file(path, sd, dtype, n_layer, d, n_ffn, vocab, n_classes, pth, tokenizer=None):
    qf = read_qslm(path)
    md = qf.metadata
    want = {"general.architecture": "spikegpt", "model.n_layer": n_layer, "model.n_embd": d,
            "model.n_ffn": n_ffn, "model.vocab_size": vocab, "model.rescale_layer": 0,
            "head.lm": "head.weight" in sd, "head.n_classes": n_classes, "spike.tau": 2.0,
            "spike.threshold": 1.0, "spike.att": True, "spike.ffn": True, "spike.emb": False,
            "spike.ffn_hidden": False}
    for k, v in want.items():
        assert md[k] == v and type(md[k]) == type(v), (k, md.get(k), v)
    h = hashlib.sha256(open(pth, "rb").read()).hexdigest()
    assert h in md["general.provenance"], md["general.provenance"]
    assert "general.name" in md and "quant.setting" in md
    if tokenizer:
        assert md["tokenizer.json"] == open(tokenizer, "rb").read()
    else:
        assert "tokenizer.json" not in md
    assert set(qf.tensors) == set(sd), set(qf.tensors) ^ set(sd)
    for name, t in sd.items():
        a = qf.tensors[name]
        ref = t.float().numpy()
        exp_shape = (d,) if ".time_" in name else tuple(t.shape)
        assert a.shape == exp_shape, (name, a.shape, exp_shape)
        two_d = ref.ndim == 2
        ttype = dtype if two_d else "f32"
        assert qf.tensor_types[name] == ttype, (name, qf.tensor_types[name], ttype)
        ref = ref.reshape(exp_shape)
        if ttype == "f16":
            assert np.array_equal(a, ref.astype(np.float16)), name
        else:
            assert np.array_equal(a, ref), name
    return qf


def test_216m(tmp):
    n_layer, d, n_ffn, vocab = 18, 768, 3072, 50277
    sd = spikegpt_state_dict(n_layer, d, n_ffn, vocab, dtype=torch.float32, seed=216)
    n = sum(t.numel() for t in sd.values())
    print("216M layout: %d tensors, %d parameters" % (len(sd), n), flush=True)
    pth = os.path.join(tmp, "spikegpt-216m-random.pth")
    torch.save(sd, pth)
    for dtype in ("f16", "f32"):
        out = os.path.join(tmp, "216m-%s.qslm" % dtype)
        convert.convert(pth, out, None, dtype)
        check_file(out, sd, dtype, n_layer, d, n_ffn, vocab, 0, pth)
        print("216M layout %s: every tensor and key checked (%d bytes)" % (
            dtype, os.path.getsize(out)), flush=True)
        os.unlink(out)
    os.unlink(pth)


def test_small_variants(tmp):
    sd = spikegpt_state_dict(2, 16, 64, 50, n_classes=3, dtype=torch.bfloat16, seed=1)
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}}
    wrapped["state_dict"]["module.copy_mask"] = torch.ones(8, 8)
    pth = os.path.join(tmp, "small.pth")
    torch.save(wrapped, pth)
    out = os.path.join(tmp, "small.qslm")
    tokp = os.path.join(ROOT, "models/tokenizer.json")
    try:  # a 50-row model cannot hold a 4096-token tokenizer
        convert.convert(pth, out, tokp, "f32")
        raise AssertionError("tokenizer larger than the vocab accepted")
    except convert.ConvertError as e:
        assert "tokenizer" in str(e)
    convert.convert(pth, out, None, "f32")
    check_file(out, sd, "f32", 2, 16, 64, 50, 3, pth)
    for bad, what in ((dict(sd, **{"head_q.weight": torch.zeros(16, 16)}), "does not know"),
                      ({k: v for k, v in sd.items() if k != "blocks.1.ln2.bias"}, "missing"),
                      (dict(sd, **{"blocks.1.att.key.weight": torch.zeros(16, 17)}), "shape")):
        torch.save(bad, pth)
        try:
            convert.convert(pth, out, None, "f32")
            raise AssertionError("accepted a bad state_dict (%s)" % what)
        except convert.ConvertError as e:
            assert what in str(e), str(e)
    print("small bf16/wrapped/classifier checkpoint and refusals: ok", flush=True)


def test_trained(tmp, ckpt, qslm_eval):
    tokp = os.path.join(ROOT, "models/tokenizer.json")
    sd = torch.load(ckpt, map_location="cpu")
    d = sd["emb.weight"].shape[1]
    n_layer = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    out = os.path.join(tmp, "trained.qslm")
    convert.convert(ckpt, out, tokp, "f32")
    n_classes = sd["cls.weight"].shape[0] if "cls.weight" in sd else 0
    check_file(out, sd, "f32", n_layer, d, sd["blocks.0.ffn.key.weight"].shape[0],
               sd["emb.weight"].shape[0], n_classes, ckpt, tokp)
    print("trained checkpoint: converted and read back (%d bytes)" % os.path.getsize(out))
    # a piece of the SOTU test split, in C and in PyTorch
    text = os.path.join(tmp, "piece.txt")
    with open(os.path.join(ROOT, ".data/sotu/test.txt"), "rb") as f:
        piece = f.read(40000)
    piece = piece[:piece.rindex(b" ")]
    with open(text, "wb") as f:
        f.write(piece)
    c = json.loads(subprocess.run([qslm_eval, out, "--text", text, "--window", "1024", "--json"],
                                  check=True, capture_output=True, text=True).stdout)
    import eval_torch
    model, tok = eval_torch.load_model(out)
    ids = tok.encode(piece.decode("utf-8"), special_as_text=True)
    t = eval_torch.perplexity(model, ids, 1024)
    print("C qslm-eval: ppl %.4f over %d tokens; PyTorch: ppl %.4f over %d tokens" % (
        c["ppl"], c["tokens"], t["ppl"], t["tokens"]))
    assert c["tokens"] == t["tokens"], "C and Python tokenize the text differently"
    assert abs(c["ppl"] / t["ppl"] - 1) < 0.005, "C and PyTorch perplexity differ by > 0.5%"
    if n_classes:
        c = json.loads(subprocess.run(
            [qslm_eval, out, "--labels", os.path.join(ROOT, ".data/sentiment/test.jsonl"),
             "--json"], check=True, capture_output=True, text=True).stdout)
        print("C qslm-eval: imdb accuracy %.4f" % c["accuracy"])
    print("trained checkpoint loads and runs in C: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-216m", action="store_true")
    ap.add_argument("--ckpt", default=os.path.join(ROOT, "models/train/out/spikegpt-sotu-final.pth"))
    default_eval = next((p for p in (os.path.join(ROOT, b, "runtime/tools/qslm-eval")
                                     for b in (".build", ".build-m4")) if os.path.exists(p)),
                        os.path.join(ROOT, ".build/runtime/tools/qslm-eval"))
    ap.add_argument("--qslm-eval", default=default_eval,
                    help="the C evaluator (default: .build's, else .build-m4's)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        test_small_variants(tmp)
        if not args.skip_216m:
            test_216m(tmp)
        if os.path.exists(args.ckpt):
            test_trained(tmp, args.ckpt, args.qslm_eval)
        else:
            print("no trained checkpoint at %s: skipped" % args.ckpt)
    print("test_convert: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
