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
are refused, since the runtime does not implement them. The tensor names and shapes come from
runtime/tensor_names.def (tensor_names.py), the table the C runtime binds by.

--upstream {auto,spikegpt,rwkv4}: the checkpoint is one as published, and the metadata records
what the upstream inference code does with it (UPSTREAM below; tests/reference/README.md,
"Upstream checkpoints"): SpikeGPT's src/model_run.py (LIF per layer and sub-block, rescale 6,
the embedding's Heaviside for vocab 77) or RWKV-LM's RWKV-v4/src/model_run.py (no spikes, no
rescale). head_q/head_k/copy_mask, which that code never reads, are then dropped; a position
embedding (pos_emb_x/pos_emb_y) is refused. auto tells the published layouts apart by n_layer,
n_embd and vocab.

The file is written tensor by tensor (qslm_format.write_qslm_stream), so memory is the
checkpoint plus one tensor.

--dtype f16 stores the 2-D matrices (emb, projections, heads) as f16; LayerNorm, time_* and the
classifier bias stay f32 (as runtime/FORMAT.md's reference files do). Spiking options (tau,
threshold, which sub-blocks spike) are written as metadata with SpikeGPT's defaults.

--spike-ffn-hidden marks a checkpoint trained with a LIF spike as the channel-mix hidden
activation (train.py --spike-ffn-hidden; a state_dict does not say it, its shapes are the same):
the file gets spike.ffn_hidden = true and qslm_format.write_qslm stores every
blocks.N.ffn.value.weight transposed, (n_ffn, d), as runtime/FORMAT.md requires.

--task NAME --labels A,B,... names a classifier head (runtime/FORMAT.md "Classification heads":
head.n_tasks, head.task.N.name, head.task.N.labels), one label per row of its weight in index
order; one pair per head, head 0 (cls.weight) first, then cls.1.weight and on. The default model:
--task sentiment --labels negative,positive --task spam --labels ham,spam. Without them a file
with one head has only head.n_classes (read as task "default", labels "0", "1", ...); a
checkpoint with several heads must name them.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
from qslm_format import Lazy, head_tensor_name, heads_metadata, write_qslm_stream  # noqa: E402

from qslm_format import Lazy, heads_metadata, write_qslm_stream  # noqa: E402
import tensor_names  # noqa: E402

DROPPED = ("copy_mask",)

# --upstream: the published checkpoints and the upstream inference code each is run with.
# Everything that code does beyond the tensors goes into the metadata, so the C runtime
# reproduces it (tests/reference/README.md, "Upstream checkpoints").
UPSTREAM = {
    "spikegpt": {
        "code": "ridgerchu/SpikeGPT src/model_run.py RWKV_RNN (029f86f)",
        "architecture": "spikegpt",
        # RWKV_RESCALE_LAYER = 6 there, for every model: att.output and ffn.value of block i
        # divided by 2^(i // 6) at load, x halved after every 6th block.
        "rescale_layer": 6,
    },
    "rwkv4": {
        "code": "BlinkDL/RWKV-LM RWKV-v4/src/model_run.py RWKV_RNN (fp32, no rescale)",
        "architecture": "rwkv4",
        "rescale_layer": 0,
    },
}
# (n_layer, n_embd, vocab) of the published checkpoints -> (upstream, name). SpikeGPT and
# RWKV-4 checkpoints hold the same tensor names, so only the layout tells them apart.
KNOWN_LAYOUTS = {
    (12, 512, 50277): ("spikegpt", "SpikeGPT-OpenWebText-45M"),
    (18, 768, 50277): ("spikegpt", "SpikeGPT-OpenWebText-216M"),
    (12, 768, 50277): ("rwkv4", "RWKV-4-Pile-169M"),
    (24, 1024, 50277): ("rwkv4", "RWKV-4-Pile-430M"),
}
# Both upstream RWKV_RNNs set RWKV_HEAD_QK_DIM = 0 and never read these.
UPSTREAM_IGNORED = ("head_q.weight", "head_k.weight", "copy_mask")
# Position embeddings: upstream adds pos_emb[len(ctx) - 1] to x; the runtime has no position.
UPSTREAM_REFUSED = ("pos_emb_x", "pos_emb_y", "pos_emb")


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
    """(n_layer, d, n_ffn, vocab, n_classes, head_lm) from the names and shapes; n_classes is
    the list of the classifier heads' class counts, head 0 first."""
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
    n_classes = head_class_counts(sd)
    if not head_lm and not n_classes:
        raise ConvertError("neither an LM head (head.weight) nor a classifier (cls.weight)")
    return n_layer, d, n_ffn, vocab, n_classes, head_lm


def head_class_counts(sd):
    """The class counts of the checkpoint's classifier heads: cls.weight/bias is head 0,
    cls.N.weight/bias head N (runtime/FORMAT.md "Classification heads"), numbered without gaps."""
    counts = []
    while head_tensor_name(len(counts)) in sd:
        i = len(counts)
        if head_tensor_name(i, bias=True) not in sd:
            raise ConvertError("%s without %s" % (head_tensor_name(i), head_tensor_name(i, True)))
        counts.append(int(sd[head_tensor_name(i)].shape[0]))
    stray = sorted(k for k in sd if k.startswith("cls.") and not any(
        k in (head_tensor_name(i), head_tensor_name(i, True)) for i in range(len(counts))))
    if stray:
        raise ConvertError("%s: a head without the heads before it (cls.weight is head 0, "
                           "cls.1.* head 1, ...)" % stray[0])
    return counts


def expected_tensors(n_layer, d, n_ffn, vocab, n_classes, head_lm):
    """[(name, shape as stored in .qslm)] in the canonical order (runtime/tensor_names.def,
    then the classifier heads in order). n_classes: the heads' class counts (an int: one head,
    0 none)."""
    out = tensor_names.model_tensors(n_layer, d, n_ffn, vocab, head_lm)
    counts = ([n_classes] if n_classes else []) if isinstance(n_classes, int) else n_classes
    for i, c in enumerate(counts):
        out += [(head_tensor_name(i), (c, d)), (head_tensor_name(i, True), (c,))]
    return out


def detect_upstream(sd, upstream):
    """(upstream key, layout name) for --upstream (auto: from the published layouts)."""
    vocab, d = sd["emb.weight"].shape
    n_layer = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    known = KNOWN_LAYOUTS.get((n_layer, d, vocab))
    if upstream == "auto":
        if vocab == 77:
            return "spikegpt", "SpikeGPT character model (vocab 77)"
        if not known:
            raise ConvertError("--upstream auto: %d layers, n_embd %d, vocab %d is not a published "
                               "layout (SpikeGPT and RWKV-4 checkpoints hold the same tensor names); "
                               "pass --upstream spikegpt or --upstream rwkv4"
                               % (n_layer, d, vocab))
        return known
    return upstream, known[1] if known and known[0] == upstream else "%d x %d, vocab %d" % (
        n_layer, d, vocab)


def find_tokenizer_checker():
    """The qslm-eval that checks a tokenizer file: $QSLM_EVAL, the repository's normal build,
    then PATH. None if there is none."""
    for cand in (os.environ.get("QSLM_EVAL"),
                 os.path.join(HERE, "..", "..", ".build", "runtime", "tools", "qslm-eval"),
                 shutil.which("qslm-eval")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def check_tokenizer(path, checker):
    """Loads the tokenizer file with the C runtime's own loader (qslm-eval --check-tokenizer)
    before anything is converted: every tool reads the embedded copy with that loader, so a
    file it refuses must be refused here, not when the converted model is first used."""
    if checker is None:
        raise ConvertError("cannot check %s: no qslm-eval found (build it: bash scripts/build.sh "
                           "normal; or set QSLM_EVAL=PATH; or pass --no-tokenizer-check)" % path)
    r = subprocess.run([checker, "--check-tokenizer", path], capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().replace("qslm-eval: ", "", 1)
        raise ConvertError("the tokenizer is refused by the runtime's loader: %s" % msg)


def convert(pth, out_path, tokenizer=None, dtype="f32", name=None, architecture="spikegpt",
            tau=2.0, threshold=1.0, spike_att=None, spike_ffn=None, spike_emb=False,
            rescale_layer=0, provenance_extra="", log=print, spike_ffn_hidden=False,
            upstream=None, tokenizer_checker="find", heads=None):
    """Converts pth to out_path. With upstream ("auto", "spikegpt" or "rwkv4") the checkpoint
    is one as published, and the metadata is what that upstream inference code does (UPSTREAM):
    architecture, spikes, tau, threshold, rescale and the embedding spike are then not taken
    from the arguments. A tokenizer is first checked with tokenizer_checker (a qslm-eval path;
    "find": find_tokenizer_checker(); None: not checked). heads: [(task, [labels])] naming the
    checkpoint's classifier."""
    if tokenizer and tokenizer_checker is not None:
        check_tokenizer(tokenizer, find_tokenizer_checker() if tokenizer_checker == "find"
                        else tokenizer_checker)
    sd = load_state_dict(pth)
    upstream_md = {}
    if upstream:
        for k in sorted(sd):
            if k in UPSTREAM_REFUSED:
                raise ConvertError("%s: %s: a position embedding (upstream adds pos_emb[len(ctx)-1] "
                                   "to the input); the runtime has no positions" % (pth, k))
        for k in UPSTREAM_IGNORED:
            if k in sd:
                log("dropping %s: the upstream RWKV_RNN runs with RWKV_HEAD_QK_DIM = 0 and never "
                    "reads it" % k)
                del sd[k]
        if "emb.weight" not in sd:
            raise ConvertError("no emb.weight: not a SpikeGPT / RWKV-4 state_dict")
        kind, layout = detect_upstream(sd, upstream)
        u = UPSTREAM[kind]
        architecture, rescale_layer = u["architecture"], u["rescale_layer"]
        tau, threshold, spike_att, spike_ffn, spike_ffn_hidden = 2.0, 1.0, None, None, False
        # SpikeGPT's model_run.py sends the embedding through ATan() (Heaviside) only for its
        # 77-character vocabulary.
        spike_emb = kind == "spikegpt" and sd["emb.weight"].shape[0] == 77
        upstream_md["general.upstream"] = "%s; layout %s" % (u["code"], layout)
        provenance_extra += "; --upstream %s (%s)" % (kind, layout)
        log("upstream %s (%s): %s" % (kind, layout, u["code"]))
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

    def make(n, shape):
        # Called by the writer when it reaches n: the checkpoint's copy is dropped as soon as
        # it is converted, so memory is the checkpoint plus one tensor (a 216M bf16 checkpoint
        # converts to f32 in about 1.3 GB).
        a = sd.pop(n).detach().to(torch.float32).reshape(shape).numpy()
        if not np.isfinite(a).all():
            raise ConvertError("%s has non-finite values" % n)
        return a

    for n, shape in exp:
        t = sd[n]
        if t.numel() != int(np.prod(shape)):
            raise ConvertError("%s has shape %s, expected %s" % (n, tuple(t.shape), shape))
        if t.dim() != len(shape):
            # only the time parameters may be squeezed ((1, 1, d) -> (d,))
            if ".time_" not in n:
                raise ConvertError("%s has shape %s, expected %s" % (n, tuple(t.shape), shape))
        elif tuple(t.shape) != shape:
            raise ConvertError("%s has shape %s, expected %s" % (n, tuple(t.shape), shape))
        if not t.is_floating_point():
            raise ConvertError("%s is %s, not a floating-point tensor" % (n, t.dtype))
        ttype = dtype if len(shape) == 2 else "f32"
        setting[n] = ttype
        tensors.append((n, Lazy(shape, lambda n=n, shape=shape: make(n, shape)), ttype))
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
        "head.n_classes": n_classes[0] if n_classes else 0,
        "spike.tau": float(tau),
        "spike.threshold": float(threshold),
        "spike.att": spiking if spike_att is None else bool(spike_att),
        "spike.ffn": spiking if spike_ffn is None else bool(spike_ffn),
        "spike.emb": bool(spike_emb),
        "spike.ffn_hidden": bool(spike_ffn_hidden),
        "spike.reset": "hard",
        "model.time_decay": "neg_exp",
    }
    md.update(upstream_md)
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
    if len(n_classes) > 1 and not heads:
        raise ConvertError("the checkpoint has %d classifier heads: name each with --task and "
                           "--labels (a file without names has one head)" % len(n_classes))
    if heads:  # [(task, [labels])] naming the checkpoint's classifier heads, head 0 first
        if [len(ls) for _, ls in heads] != n_classes:
            raise ConvertError("--task/--labels: the checkpoint has %s; got %d task(s) with %s labels"
                               % ("heads of %s classes" % "/".join(map(str, n_classes))
                                  if n_classes else "no classifier",
                                  len(heads), "/".join(str(len(ls)) for _, ls in heads)))
        try:
            md.update(heads_metadata(heads))
        except ValueError as e:
            raise ConvertError("--task/--labels: %s" % e)
    n_params = sum(int(np.prod(lazy.shape)) for _, lazy, _ in tensors)
    size = write_qslm_stream(out_path, md, tensors)
    log("wrote %s: %d layers, d %d, n_ffn %d, vocab %d, classes %s, lm %s%s; %d parameters, "
        "%d bytes (%s)" % (out_path, n_layer, d, n_ffn, vocab,
                           "/".join(map(str, n_classes)) or "0", head_lm,
                           ", spike.ffn_hidden (ffn.value stored transposed)"
                           if spike_ffn_hidden else "", n_params, size, dtype))
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pth", help="PyTorch state_dict (SpikeGPT names)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--tokenizer", help="Hugging Face tokenizer.json to embed (first loaded "
                    "with the runtime's loader: qslm-eval --check-tokenizer, found as $QSLM_EVAL, "
                    "in .build/ or on PATH)")
    ap.add_argument("--no-tokenizer-check", action="store_true",
                    help="embed the tokenizer without loading it first")
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
    ap.add_argument("--upstream", choices=("auto", "spikegpt", "rwkv4"),
                    help="a checkpoint as published, run as the upstream inference code runs "
                         "it (auto: tell SpikeGPT-45M/216M, the vocab-77 character model and "
                         "RWKV-4-Pile-169M/430M by their layout); overrides the spike and "
                         "rescale options")
    ap.add_argument("--task", action="append",
                    help="name of a classifier head's task (a-z 0-9 _ -); once per head, head 0 "
                    "first")
    ap.add_argument("--labels", action="append",
                    help="that head's class names in index order, comma-separated")
    args = ap.parse_args()
    if len(args.task or []) != len(args.labels or []):
        ap.error("--task and --labels go together, one pair per head")
    try:
        convert(args.pth, args.out, args.tokenizer, args.dtype, args.name, args.architecture,
                args.tau, args.threshold,
                False if args.no_spike_att else None, False if args.no_spike_ffn else None,
                args.spike_emb, args.rescale_layer,
                ("; " + args.provenance) if args.provenance else "",
                spike_ffn_hidden=args.spike_ffn_hidden, upstream=args.upstream,
                tokenizer_checker=None if args.no_tokenizer_check else "find",
                heads=[(t, ls.split(",")) for t, ls in zip(args.task, args.labels)]
                if args.task else None)
    except ConvertError as e:
        print("convert.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
