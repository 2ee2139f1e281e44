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
4. spike.ffn_hidden: a checkpoint converted with spike_ffn_hidden stores every ffn.value.weight
   transposed, (n_ffn, d), and reads back in nn.Linear's layout; without the flag the file is
   the dense layout; the writer refuses a wrong shape and the reader a flagged file whose
   ffn.value is not transposed; the reference files round-trip byte for byte.
5. Quantized types (q8_0..q2_0 = 16..21, q8_1..q2_1 = 22..27, q4_s..q2_s = 28..30): blocks
   packed here by hand from
   runtime/FORMAT.md's tables, written and read back, must dequantize to the values the table
   gives (bit for bit); and with `.build/runtime/tools/qslm-quantize`, the reference models
   (spike_lm, spike_ffn_hidden) quantized to each type in C and converted back to f32 in C
   (the C dequantization) must equal qslm_format's dequantization of the quantized file bit for
   bit.
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
import qslm_format  # noqa: E402
from qslm_format import Packed, QslmFormatError, read_qslm  # noqa: E402

REF_DIR = os.path.join(ROOT, "tests", "data", "reference")


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
            "spike.ffn_hidden": False, "spike.reset": "hard", "model.time_decay": "neg_exp"}
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
    # a tokenizer the runtime's loader refuses is refused before anything is converted
    with open(tokp) as f:
        tj = json.load(f)
    tj["normalizer"] = {"type": "Lowercase"}
    badtok = os.path.join(tmp, "lowercase-tokenizer.json")
    with open(badtok, "w") as f:
        json.dump(tj, f)
    try:
        convert.convert(pth, out, badtok, "f32")
        raise AssertionError("a tokenizer the runtime refuses was embedded")
    except convert.ConvertError as e:
        assert "refused by the runtime's loader" in str(e) and "Lowercase" in str(e), str(e)
    assert not os.path.exists(out)
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


def test_upstream(tmp):
    """--upstream: the metadata says what the upstream RWKV_RNN does, detected from the layout
    or given; what that code ignores is dropped, what the runtime cannot do is refused by name."""
    out = os.path.join(tmp, "up.qslm")
    pth = os.path.join(tmp, "up.pth")
    quiet = lambda m: None  # noqa: E731

    def conv(sd, upstream):
        torch.save(sd, pth)
        convert.convert(pth, out, None, "f32", upstream=upstream, log=quiet)
        return read_qslm(out)

    def refused(sd, upstream, what):
        torch.save(sd, pth)
        try:
            convert.convert(pth, out, None, "f32", upstream=upstream, log=quiet)
        except convert.ConvertError as e:
            assert what in str(e), str(e)
            return
        raise AssertionError("accepted (%s)" % what)

    # the vocab-77 character model: SpikeGPT, embedding through Heaviside, rescale 6
    char = spikegpt_state_dict(2, 16, 64, 77, dtype=torch.float16, seed=3)
    md = conv(char, "auto").metadata
    assert md["general.architecture"] == "spikegpt" and md["spike.emb"] is True, md
    assert md["model.rescale_layer"] == 6 and md["spike.att"] and md["spike.ffn"], md
    assert md["spike.reset"] == "hard" and md["model.time_decay"] == "neg_exp", md
    assert "SpikeGPT src/model_run.py" in md["general.upstream"], md["general.upstream"]
    # same tensors, vocab 64: SpikeGPT or RWKV-4 cannot be told apart without the flag
    small = spikegpt_state_dict(2, 16, 64, 64, dtype=torch.bfloat16, seed=4)
    refused(small, "auto", "--upstream spikegpt or --upstream rwkv4")
    md = conv(small, "spikegpt").metadata
    assert md["spike.emb"] is False and md["model.rescale_layer"] == 6, md
    # RWKV-4 with the tiny-attention head of training: RWKV_RNN ignores it, so do we
    qk = dict(small, **{"head_q.weight": torch.zeros(8, 16), "head_k.weight": torch.zeros(8, 16),
                        "copy_mask": torch.ones(32, 32)})
    qf = conv(qk, "rwkv4")
    md = qf.metadata
    assert md["general.architecture"] == "rwkv4" and md["model.rescale_layer"] == 0, md
    assert not md["spike.att"] and not md["spike.ffn"] and not md["spike.emb"], md
    assert "head_q.weight" not in qf.tensors and "copy_mask" not in qf.tensors
    assert qf.tensors["blocks.1.att.time_mix_k"].shape == (16,)
    assert np.array_equal(qf.tensors["blocks.1.att.time_mix_k"],
                          small["blocks.1.att.time_mix_k"].float().numpy().reshape(16))
    # position embeddings: refused, naming the key
    refused(dict(small, pos_emb_x=torch.zeros(1, 33, 16), pos_emb_y=torch.zeros(33, 1, 16)),
            "rwkv4", "pos_emb_x")
    # anything else unknown: refused, naming it (RWKV-ffnPre's block 0)
    refused(dict(small, **{"blocks.0.ffnPre.key.weight": torch.zeros(64, 16)}), "rwkv4",
            "blocks.0.ffnPre.key.weight")
    # the published layouts are recognised (shapes only: names from the table, no values)
    for (n_layer, d, vocab), (kind, _) in convert.KNOWN_LAYOUTS.items():
        fake = {"emb.weight": torch.empty(vocab, d)}
        fake.update({"blocks.%d.ln1.weight" % i: torch.empty(d) for i in range(n_layer)})
        assert convert.detect_upstream(fake, "auto")[0] == kind
    # the one table: convert.py's names are runtime/tensor_names.def's; a line the parser does
    # not understand is an error, not a silently missing tensor
    import tensor_names
    names = [n for n, _ in convert.expected_tensors(2, 16, 64, 64, 0, True)]
    assert names[0] == "emb.weight" and names[-1] == "head.weight" and len(names) == 1 + 2 + 2 * 18 + 2 + 1
    bad = os.path.join(tmp, "bad.def")
    with open(bad, "w") as f:
        f.write('QR_TENSOR(LAYER,   "ln1.weight", VEC, D)\n')
    try:
        tensor_names.load(bad)
        raise AssertionError("a malformed QR_TENSOR line was accepted")
    except ValueError as e:
        assert "bad.def:1" in str(e), str(e)
    print("--upstream: detection, metadata, dropped head_qk, refused pos_emb/ffnPre: ok",
          flush=True)
def test_heads(tmp):
    """--task/--labels: the classifier named in the file (FORMAT.md "Classification heads"), the
    tensors unchanged; a label count that is not the classifier's is refused."""
    sd = spikegpt_state_dict(1, 16, 64, 50, n_classes=3, seed=2)
    pth = os.path.join(tmp, "heads.pth")
    torch.save(sd, pth)
    plain, named = os.path.join(tmp, "plain.qslm"), os.path.join(tmp, "named.qslm")
    convert.convert(pth, plain, None, "f32")
    convert.convert(pth, named, None, "f32", heads=[("topic", ["war", "\u00e9conomie", "health"])])
    a, b = read_qslm(plain), read_qslm(named)
    assert a.heads() == [("default", ["0", "1", "2"])], a.heads()
    assert b.heads() == [("topic", ["war", "\u00e9conomie", "health"])], b.heads()
    assert b.metadata["head.n_tasks"] == 1 and b.metadata["head.n_classes"] == 3
    for n in a.tensors:
        assert np.array_equal(a.tensors[n], b.tensors[n]), n
    for heads, what in (([("topic", ["a", "b"])], "heads of 3 classes"),
                        ([("Topic", ["a", "b", "c"])], "a task name"),
                        ([("t", ["a", "a", "c"])], "both 'a'")):
        try:
            convert.convert(pth, named, None, "f32", heads=heads)
            raise AssertionError("accepted %s" % heads)
        except convert.ConvertError as e:
            assert what in str(e), str(e)
    # two heads: cls.* and cls.1.*, named in order; unnamed or half-named refused
    sd2 = dict(sd)
    sd2["cls.1.weight"], sd2["cls.1.bias"] = torch.randn(2, 16), torch.randn(2)
    pth2, two = os.path.join(tmp, "heads2.pth"), os.path.join(tmp, "two.qslm")
    torch.save(sd2, pth2)
    convert.convert(pth2, two, None, "f32", heads=[("topic", ["war", "peace", "health"]),
                                                    ("spam", ["ham", "spam"])])
    c = read_qslm(two)
    assert c.heads() == [("topic", ["war", "peace", "health"]), ("spam", ["ham", "spam"])], c.heads()
    assert c.metadata["head.n_tasks"] == 2 and c.metadata["head.n_classes"] == 3
    assert np.array_equal(c.tensors["cls.1.weight"], sd2["cls.1.weight"].numpy())
    assert np.array_equal(c.tensors["cls.1.bias"], sd2["cls.1.bias"].numpy())
    for heads, what in ((None, "name each with --task"),
                        ([("topic", ["a", "b", "c"])], "heads of 3/2 classes")):
        try:
            convert.convert(pth2, two, None, "f32", heads=heads)
            raise AssertionError("accepted %s" % heads)
        except convert.ConvertError as e:
            assert what in str(e), str(e)
    gap = dict(sd)
    gap["cls.2.weight"], gap["cls.2.bias"] = torch.randn(2, 16), torch.randn(2)
    torch.save(gap, pth2)
    try:
        convert.convert(pth2, two, None, "f32", heads=[("topic", ["a", "b", "c"])])
        raise AssertionError("accepted a head after a gap")
    except convert.ConvertError as e:
        assert "without the heads before it" in str(e), str(e)
    print("--task/--labels: named heads (one and two), same tensors, refusals: ok", flush=True)


def test_trained(tmp, ckpt, qslm_eval):
    tokp = os.path.join(ROOT, "models/tokenizer.json")
    sd = torch.load(ckpt, map_location="cpu")
    d = sd["emb.weight"].shape[1]
    n_layer = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    out = os.path.join(tmp, "trained.qslm")
    # the default model's checkpoint has two heads, which must be named (as its step 5 does)
    heads = ([("sentiment", ["negative", "positive"]), ("spam", ["ham", "spam"])]
             if "cls.1.weight" in sd else None)
    convert.convert(ckpt, out, tokp, "f32", heads=heads)
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
    model, tok, _ = eval_torch.load_model(out)
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
        print("C qslm-eval: imdb accuracy %.4f (the first head)" % c["accuracy"])
    print("trained checkpoint loads and runs in C: ok")


def test_ffn_hidden(tmp):
    n_layer, d, n_ffn, vocab = 2, 32, 128, 64
    sd = spikegpt_state_dict(n_layer, d, n_ffn, vocab, seed=7)
    pth = os.path.join(tmp, "hidden.pth")
    torch.save(sd, pth)
    out = os.path.join(tmp, "hidden.qslm")
    convert.convert(pth, out, None, "f32", spike_ffn_hidden=True, log=lambda m: None)
    stored = read_qslm(out, layout="stored")
    module = read_qslm(out)
    assert stored.metadata["spike.ffn_hidden"] is True
    for i in range(n_layer):
        n = "blocks.%d.ffn.value.weight" % i
        ref = sd[n].numpy()                                  # (d, n_ffn), nn.Linear's layout
        assert stored.tensors[n].shape == (n_ffn, d) and stored.stored_shapes[n] == (n_ffn, d)
        assert np.array_equal(stored.tensors[n], ref.T), n  # row j = column j
        assert module.tensors[n].shape == (d, n_ffn) and np.array_equal(module.tensors[n], ref)
        assert module.tensors[n].flags["C_CONTIGUOUS"]
        # the bytes in the file are row j = the d weights hidden unit j feeds
        with open(out, "rb") as f:
            f.seek(stored.offsets[n] + 4 * d * 5)
            row5 = np.frombuffer(f.read(4 * d), dtype="<f4")
        assert np.array_equal(row5, ref[:, 5])
    for n in sd:  # every other tensor as in the dense file
        if ".ffn.value." not in n:
            assert np.array_equal(module.tensors[n], sd[n].float().numpy().reshape(
                module.tensors[n].shape)), n
    # without the flag: the dense layout, and the same bytes for every other tensor
    dense = os.path.join(tmp, "dense.qslm")
    convert.convert(pth, dense, None, "f32", log=lambda m: None)
    qd = read_qslm(dense, layout="stored")
    assert qd.metadata["spike.ffn_hidden"] is False
    assert qd.tensors["blocks.0.ffn.value.weight"].shape == (d, n_ffn)
    # the writer wants nn.Linear's layout; the reader refuses an untransposed flagged file
    md = dict(stored.typed_metadata())
    bad = [(n, module.tensors[n].T if ".ffn.value." in n else module.tensors[n])
           for n in module.tensors]
    try:
        qslm_format.encode_qslm(md, bad)
        raise AssertionError("writer accepted ffn.value as (n_ffn, d) in module layout")
    except QslmFormatError as e:
        assert "spike.ffn_hidden" in str(e), e
    blob = qslm_format.encode_qslm(dict(md, **{"spike.ffn_hidden": ("bool", False)}),
                                   list(module.tensors.items()))
    key = b"spike.ffn_hidden" + (4).to_bytes(4, "little")
    at = blob.index(key) + len(key)
    assert blob[at] == 0
    flipped = blob[:at] + b"\x01" + blob[at + 1:]
    try:
        qslm_format.decode_qslm(flipped, "flipped")
        raise AssertionError("reader accepted a flagged file with ffn.value (d, n_ffn)")
    except QslmFormatError as e:
        assert "transposed" in str(e), e
    # read -> write of the reference files gives the same bytes (dense and spike-hidden)
    for name in ("spike_lm", "spike_ffn_hidden"):
        path = os.path.join(REF_DIR, name + ".qslm")
        if not os.path.exists(path):
            continue
        qf = read_qslm(path)
        again = qslm_format.encode_qslm(qf.typed_metadata(),
                                        [(n, a, qf.tensor_types[n]) for n, a in qf.tensors.items()])
        assert again == open(path, "rb").read(), name
    print("spike.ffn_hidden: transposed storage, refusals, byte-exact round trips: ok", flush=True)


def pack_block_by_hand(q, bits):
    """The code bytes of one block of 32 codes, written byte by byte from FORMAT.md's planes
    (independent of qslm_format.pack_codes)."""
    out = bytearray()
    if bits == 8:
        return bytes(q)
    if bits in (6, 5, 4):                       # nibbles (bits 0-3)
        for j in range(16):
            out.append((q[j] & 15) | ((q[j + 16] & 15) << 4))
    crumb_shift = {6: 4, 3: 0, 2: 0}.get(bits)
    if crumb_shift is not None:                 # crumbs of bits s, s+1
        c = lambda i: (q[i] >> crumb_shift) & 3
        for j in range(8):
            out.append(c(j) | c(j + 8) << 2 | c(j + 16) << 4 | c(j + 24) << 6)
    plane_bit = {5: 4, 3: 2}.get(bits)
    if plane_bit is not None:                   # bit plane: little-endian u32, bit i of q[i]
        word = 0
        for i in range(32):
            word |= ((q[i] >> plane_bit) & 1) << i
        out += word.to_bytes(4, "little")
    return bytes(out)


def test_quant_by_hand(tmp):
    rng = np.random.RandomState(5)
    rows, cols = 3, 64                          # 2 blocks per row
    for code, (tname, bits, kind) in sorted(qslm_format.QUANT_TYPES.items()):
        has_min, small = kind == qslm_format.KIND_MIN, kind == qslm_format.KIND_SMALL
        nb = rows * cols // 32
        q = rng.randint(0, 1 << bits, size=(nb, 32))
        q[0, :] = (1 << bits) - 1               # every bit set in one block
        q[1, :] = 0
        d = rng.uniform(-0.1, 0.1, nb).astype(np.float16)
        m = rng.uniform(-0.5, 0.5, nb).astype(np.float16)
        e = rng.randint(0, 0xf8, size=nb).astype(np.uint8)  # qB_s: E5M3, d = the f16 e << 7
        e[0] = 0xf7                             # the largest finite scale
        if small:
            d = (e.astype(np.uint16) << 7).view(np.float16)
        blob = bytearray()
        for b in range(nb):
            if small:
                blob += bytes([int(e[b])])
            else:
                blob += d[b].tobytes() + (m[b].tobytes() if has_min else b"")
            blob += pack_block_by_hand([int(x) for x in q[b]], bits)
        wpb, bpb = qslm_format.type_block(code)
        assert len(blob) == nb * bpb, (tname, len(blob), nb * bpb)
        assert bpb == {8: 32, 6: 24, 5: 20, 4: 16, 3: 12, 2: 8}[bits] + (
            4 if has_min else 1 if small else 2)
        assert qslm_format.pack_codes(q, bits).tobytes() == b"".join(
            pack_block_by_hand([int(x) for x in q[b]], bits) for b in range(nb)), tname
        # the values FORMAT.md gives, one block at a time, in float32
        want = np.empty((nb, 32), dtype=np.float32)
        for b in range(nb):
            db = np.float32(d[b])
            for i in range(32):
                if has_min:
                    want[b, i] = np.float32(db * np.float32(q[b, i])) + np.float32(m[b])
                elif small:                     # q − 2^(B−1) + ½, exact in float32
                    want[b, i] = db * np.float32(int(q[b, i]) - (1 << (bits - 1)) + 0.5)
                else:
                    want[b, i] = db * np.float32(int(q[b, i]) - (1 << (bits - 1)))
        want = want.reshape(rows, cols)
        path = os.path.join(tmp, "hand-%s.qslm" % tname)
        md = {"general.architecture": "spikegpt", "model.n_layer": 1, "model.n_embd": 32,
              "model.vocab_size": 3}
        qslm_format.write_qslm(path, md, [("w", Packed((rows, cols), blob), tname),
                                          ("v", np.arange(4, dtype=np.float32))])
        qf = read_qslm(path)
        assert qf.tensor_types["w"] == tname and qf.tensors["w"].dtype == np.float32
        got = qf.tensors["w"]
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (
            tname, np.abs(got - want).max())
        # a file whose size does not match the type is refused
        try:
            qslm_format.write_qslm(path, md, [("w", Packed((rows, cols), blob[:-1]), tname)])
            raise AssertionError("short %s data accepted" % tname)
        except QslmFormatError:
            pass
    try:
        qslm_format.write_qslm(os.path.join(tmp, "x.qslm"), md,
                               [("w", Packed((2, 48), bytes(2 * 48 // 32 * 18)), "q4_0")])
        raise AssertionError("a row of 48 weights accepted for q4_0")
    except QslmFormatError as e:
        assert "blocks" in str(e), e
    print("quantized types by hand (%d types, FORMAT.md's planes): bit-exact"
          % len(qslm_format.QUANT_TYPES), flush=True)


def test_quant_vs_c(tmp, quantize):
    """Each type: quantize in C, convert back to f32 in C (its dequantization), compare."""
    for name in ("spike_lm", "spike_ffn_hidden"):
        src = os.path.join(REF_DIR, name + ".qslm")
        orig = read_qslm(src)
        for code, (tname, bits, _) in sorted(qslm_format.QUANT_TYPES.items()):
            qp, bp = os.path.join(tmp, "c-%s.qslm" % tname), os.path.join(tmp, "c-back.qslm")
            for a, b, t in ((src, qp, tname), (qp, bp, "f32")):
                subprocess.run([quantize, a, b, "--type", t, "--threads", "1"], check=True,
                               capture_output=True)
            qf, back = read_qslm(qp), read_qslm(bp)
            n_q = 0
            for n, a in qf.tensors.items():
                c = back.tensors[n]
                assert a.shape == c.shape == orig.tensors[n].shape, (n, a.shape, c.shape)
                assert qf.stored_shapes[n] == back.stored_shapes[n], n
                if qf.tensor_types[n] == tname:
                    n_q += 1
                    assert np.array_equal(a.view(np.uint32), c.view(np.uint32)), (
                        name, tname, n, float(np.abs(a - c).max()))
                    # and close to the original weights (a misread plane would not be)
                    o = orig.tensors[n]
                    err = np.sqrt(np.mean((a - o) ** 2)) / np.sqrt(np.mean(o ** 2))
                    assert err < 2.0 ** (2 - bits), (name, tname, n, err)
            assert n_q >= 2 * 7, (name, tname, n_q)
            if name == "spike_ffn_hidden":
                assert qf.stored_shapes["blocks.0.ffn.value.weight"] == (128, 32)
    print("quantized types vs C (qslm-quantize there and back, %d types, spike_lm and "
          "spike_ffn_hidden): bit-exact" % len(qslm_format.QUANT_TYPES), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-216m", action="store_true")
    ap.add_argument("--ckpt", default=os.path.join(ROOT, "models/train/out/final2.pth"))
    default_eval = next((p for p in (os.path.join(ROOT, b, "runtime/tools/qslm-eval")
                                     for b in (".build", ".build-m4")) if os.path.exists(p)),
                        os.path.join(ROOT, ".build/runtime/tools/qslm-eval"))
    ap.add_argument("--qslm-eval", default=default_eval,
                    help="the C evaluator (default: .build's, else .build-m4's)")
    ap.add_argument("--qslm-quantize", default=os.path.join(ROOT, ".build/runtime/tools/qslm-quantize"),
                    help="the C quantizer (scripts/build.sh normal)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        test_small_variants(tmp)
        test_upstream(tmp)
        test_heads(tmp)
        test_ffn_hidden(tmp)
        test_quant_by_hand(tmp)
        if os.path.exists(args.qslm_quantize):
            test_quant_vs_c(tmp, args.qslm_quantize)
        else:
            print("no %s: quantized types vs C skipped" % args.qslm_quantize)
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
