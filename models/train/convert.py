#!/usr/bin/python3
"""convert.py: a SpikeGPT PyTorch state_dict (.pth) + tokenizer.json -> a .qslm model file.

    /usr/bin/python3 models/train/convert.py models/train/out/spikegpt-sotu-final.pth \
        --tokenizer models/tokenizer.json --dtype f32 -o models/spikegpt-sotu.qslm

The model's shape is read from the tensor names (runtime/FORMAT.md, SpikeGPT's own names):
n_layer from blocks.N, d from emb.weight, n_ffn from blocks.0.ffn.key.weight, vocab from
emb.weight (and head.weight must agree), classes from cls.weight. It accepts the real
SpikeGPT-216M layout (vocab 50277, 18 layers, d 768): ln0 on block 0 only, time_decay and
time_first as (d,) and the time_mix tensors as (1, 1, d) (squeezed to (d,) here), an optional
classifier, bf16/f16/f32 storage, a {"state_dict": ...} or {"model": ...} wrapper and
"module." prefixes. The buffer copy_mask is dropped; head_q/head_k (RWKV's tiny-attention head)
are refused, since the runtime does not implement them.

--dtype f16 stores the 2-D matrices (emb, projections, heads) as f16; LayerNorm, time_* and the
classifier bias stay f32 (as runtime/FORMAT.md's reference files do). Spiking options (tau,
threshold, which sub-blocks spike) are written as metadata with SpikeGPT's defaults.

--spike-ffn-hidden marks a checkpoint trained with a LIF spike as the channel-mix hidden
activation (train.py --spike-ffn-hidden; a state_dict does not say it, its shapes are the same):
the file gets spike.ffn_hidden = true and qslm_format.write_qslm stores every
blocks.N.ffn.value.weight transposed, (n_ffn, d), as runtime/FORMAT.md requires.

--task NAME --labels A,B,... names the checkpoint's classifier head (runtime/FORMAT.md
"Classification heads": head.n_tasks, head.task.0.name, head.task.0.labels), one label per row
of cls.weight in index order; the sentiment model: --task sentiment --labels negative,positive.
Without them the file has only head.n_classes (read as task "default", labels "0", "1", ...).
"""

import argparse
import hashlib
import json
import os
import re
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from qslm_format import heads_metadata, write_qslm  # noqa: E402

ATT_VEC = ("time_decay", "time_first", "time_mix_k", "time_mix_v", "time_mix_r")
ATT_MAT = ("key", "value", "receptance", "output")
FFN_VEC = ("time_mix_k", "time_mix_r")
FFN_MAT = ("key", "receptance", "value")
DROPPED = ("copy_mask",)


class ConvertError(ValueError):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path):
    sd = torch.load(path, map_location="cpu")
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ConvertError("%s: not a state_dict (a %s)" % (path, type(sd).__name__))
    out = {}
    for k, v in sd.items():
        if not torch.is_tensor(v):
            continue
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def infer_shape(sd):
    """(n_layer, d, n_ffn, vocab, n_classes, head_lm) from the names and shapes."""
    if "emb.weight" not in sd:
        raise ConvertError("no emb.weight: not a SpikeGPT / RWKV-4 state_dict")
    vocab, d = sd["emb.weight"].shape
    layers = sorted({int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if not layers or layers != list(range(len(layers))):
        raise ConvertError("blocks must be numbered 0..N-1, found %s" % layers[:20])
    n_layer = len(layers)
    if "blocks.0.ffn.key.weight" not in sd:
        raise ConvertError("no blocks.0.ffn.key.weight")
    n_ffn = sd["blocks.0.ffn.key.weight"].shape[0]
    head_lm = "head.weight" in sd
    if head_lm and tuple(sd["head.weight"].shape) != (vocab, d):
        raise ConvertError("head.weight is %s, emb.weight says (%d, %d)"
                           % (tuple(sd["head.weight"].shape), vocab, d))
    n_classes = 0
    if "cls.weight" in sd:
        n_classes = sd["cls.weight"].shape[0]
        if "cls.bias" not in sd:
            raise ConvertError("cls.weight without cls.bias")
    if not head_lm and n_classes == 0:
        raise ConvertError("neither an LM head (head.weight) nor a classifier (cls.weight)")
    return n_layer, d, n_ffn, vocab, n_classes, head_lm


def expected_tensors(n_layer, d, n_ffn, vocab, n_classes, head_lm):
    """[(name, shape as stored in .qslm)] in the canonical order."""
    out = [("emb.weight", (vocab, d))]
    for i in range(n_layer):
        p = "blocks.%d." % i
        lns = (["ln0"] if i == 0 else []) + ["ln1", "ln2"]
        for ln in lns:
            out += [(p + ln + ".weight", (d,)), (p + ln + ".bias", (d,))]
        out += [(p + "att." + n, (d,)) for n in ATT_VEC]
        out += [(p + "att." + n + ".weight", (d, d)) for n in ATT_MAT]
        out += [(p + "ffn." + n, (d,)) for n in FFN_VEC]
        out += [(p + "ffn.key.weight", (n_ffn, d)), (p + "ffn.receptance.weight", (d, d)),
                (p + "ffn.value.weight", (d, n_ffn))]
    out += [("ln_out.weight", (d,)), ("ln_out.bias", (d,))]
    if head_lm:
        out.append(("head.weight", (vocab, d)))
    if n_classes:
        out += [("cls.weight", (n_classes, d)), ("cls.bias", (n_classes,))]
    return out


def convert(pth, out_path, tokenizer=None, dtype="f32", name=None, architecture="spikegpt",
            tau=2.0, threshold=1.0, spike_att=None, spike_ffn=None, spike_emb=False,
            rescale_layer=0, provenance_extra="", log=print, spike_ffn_hidden=False, heads=None):
    sd = load_state_dict(pth)
    n_layer, d, n_ffn, vocab, n_classes, head_lm = infer_shape(sd)
    exp = expected_tensors(n_layer, d, n_ffn, vocab, n_classes, head_lm)
    names = {n for n, _ in exp}
    for k in list(sd):
        if k.split(".")[-1] in DROPPED:
            log("dropping buffer %s" % k)
            del sd[k]
    unknown = sorted(k for k in sd if k not in names)
    if unknown:
        raise ConvertError("%s: tensors the runtime does not know: %s" % (pth, unknown[:10]))
    missing = [n for n, _ in exp if n not in sd]
    if missing:
        raise ConvertError("%s: missing tensors: %s" % (pth, missing[:10]))
    tensors, setting = [], {}
    for n, shape in exp:
        t = sd[n].detach().to(torch.float32)
        if t.numel() != int(np.prod(shape)):
            raise ConvertError("%s has shape %s, expected %s" % (n, tuple(t.shape), shape))
        if t.dim() != len(shape):
            # only the time parameters may be squeezed ((1, 1, d) -> (d,))
            if ".time_" not in n:
                raise ConvertError("%s has shape %s, expected %s" % (n, tuple(t.shape), shape))
        elif tuple(t.shape) != shape:
            raise ConvertError("%s has shape %s, expected %s" % (n, tuple(t.shape), shape))
        a = t.reshape(shape).numpy()
        if not np.isfinite(a).all():
            raise ConvertError("%s has non-finite values" % n)
        ttype = dtype if len(shape) == 2 else "f32"
        setting[n] = ttype
        tensors.append((n, a, ttype))
    spiking = architecture == "spikegpt"
    md = {
        "general.architecture": architecture,
        "general.name": name or os.path.splitext(os.path.basename(out_path))[0],
        "general.provenance": "models/train/convert.py from %s (sha256 %s)%s" % (
            os.path.basename(pth), sha256_file(pth), provenance_extra),
        "model.n_layer": n_layer,
        "model.n_embd": d,
        "model.n_ffn": n_ffn,
        "model.vocab_size": vocab,
        "model.rescale_layer": rescale_layer,
        "head.lm": head_lm,
        "head.n_classes": n_classes,
        "spike.tau": float(tau),
        "spike.threshold": float(threshold),
        "spike.att": spiking if spike_att is None else bool(spike_att),
        "spike.ffn": spiking if spike_ffn is None else bool(spike_ffn),
        "spike.emb": bool(spike_emb),
        "spike.ffn_hidden": bool(spike_ffn_hidden),
    }
    if tokenizer:
        with open(tokenizer, "rb") as f:
            tj = f.read()
        j = json.loads(tj.decode("utf-8"))
        n_tok = len({int(v) for v in j["model"]["vocab"].values()}
                    | {int(a["id"]) for a in j.get("added_tokens") or []})
        if n_tok > vocab:
            raise ConvertError("the tokenizer has %d tokens, the model's embedding only %d rows"
                               % (n_tok, vocab))
        if n_tok != vocab:
            log("note: tokenizer has %d tokens, the model %d embedding rows" % (n_tok, vocab))
        md["tokenizer.json"] = tj
    types = set(setting.values())
    md["quant.setting"] = types.pop() if len(types) == 1 else json.dumps(setting)
    # Last, so the keys sit where models/train/set_heads.py puts them in an existing file.
    if heads:  # [(task, [labels])] naming the checkpoint's classifier (cls.weight: one head)
        if n_classes == 0 or len(heads) != 1 or len(heads[0][1]) != n_classes:
            raise ConvertError("--task/--labels: the checkpoint has %s; got %d task(s) with %s labels"
                               % ("a %d-class classifier" % n_classes if n_classes else "no classifier",
                                  len(heads), "/".join(str(len(ls)) for _, ls in heads)))
        try:
            md.update(heads_metadata(heads))
        except ValueError as e:
            raise ConvertError("--task/--labels: %s" % e)
    size = write_qslm(out_path, md, tensors)
    n_params = sum(a.size for _, a, _ in tensors)
    log("wrote %s: %d layers, d %d, n_ffn %d, vocab %d, classes %d, lm %s%s; %d parameters, "
        "%d bytes (%s)" % (out_path, n_layer, d, n_ffn, vocab, n_classes, head_lm,
                           ", spike.ffn_hidden (ffn.value stored transposed)"
                           if spike_ffn_hidden else "", n_params, size, dtype))
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pth", help="PyTorch state_dict (SpikeGPT names)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--tokenizer", help="Hugging Face tokenizer.json to embed")
    ap.add_argument("--dtype", choices=("f32", "f16"), default="f32")
    ap.add_argument("--name")
    ap.add_argument("--architecture", choices=("spikegpt", "rwkv4"), default="spikegpt")
    ap.add_argument("--tau", type=float, default=2.0)
    ap.add_argument("--threshold", type=float, default=1.0)
    ap.add_argument("--no-spike-att", action="store_true")
    ap.add_argument("--no-spike-ffn", action="store_true")
    ap.add_argument("--spike-emb", action="store_true")
    ap.add_argument("--spike-ffn-hidden", action="store_true",
                    help="the checkpoint's channel-mix hidden activation is a LIF spike")
    ap.add_argument("--rescale-layer", type=int, default=0)
    ap.add_argument("--provenance", default="", help="text appended to general.provenance")
    ap.add_argument("--task", help="name of the classifier head's task (a-z 0-9 _ -)")
    ap.add_argument("--labels", help="its class names in index order, comma-separated")
    args = ap.parse_args()
    if (args.task is None) != (args.labels is None):
        ap.error("--task and --labels go together")
    try:
        convert(args.pth, args.out, args.tokenizer, args.dtype, args.name, args.architecture,
                args.tau, args.threshold,
                False if args.no_spike_att else None, False if args.no_spike_ffn else None,
                args.spike_emb, args.rescale_layer,
                ("; " + args.provenance) if args.provenance else "",
                spike_ffn_hidden=args.spike_ffn_hidden,
                heads=[(args.task, args.labels.split(","))] if args.task else None)
    except ConvertError as e:
        print("convert.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
