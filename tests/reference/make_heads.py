#!/usr/bin/python3
"""make_heads.py: the two-head reference model and its golden classifier outputs.

    /usr/bin/python3 tests/reference/make_heads.py

Reads tests/data/reference/spike_cls.qslm (make_golden.py's classifier model: 3 classes) and
writes tests/data/reference/spike_heads.qslm: the same backbone and tensors, its classifier named
(task "mood", labels calm, tense, "joyful é" -- a non-ASCII label on purpose), plus a second head,
task "polarity" (negative, positive), whose weights cls.1.weight (2, 32) and cls.1.bias (2) are
drawn from numpy's RandomState(7001). runtime/FORMAT.md "Classification heads" gives the keys.

tests/data/reference/spike_heads.golden.json holds, for make_golden.py's fixed tokens, the
reference's logits of each head: head_i.weight @ mean_t(ln_out(x_t)) + head_i.bias, computed by
spikegpt_ref.py's RNN (float32), with the tolerance the C test holds (1e-4 absolute). The output
is deterministic: the same bytes from one run to the next.
"""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from make_golden import TOKENS, TOLERANCE, dump, raw_floats, write_text  # noqa: E402
from spikegpt_ref import DATA_DIR, run_rnn  # noqa: E402
from qslm_format import head_tensor_name, heads_metadata, read_qslm, write_qslm  # noqa: E402

SEED = 7001
HEADS = [("mood", ["calm", "tense", "joyful \u00e9"]), ("polarity", ["negative", "positive"])]


def main():
    torch.set_num_threads(1)
    src = read_qslm(os.path.join(DATA_DIR, "spike_cls.qslm"))
    d = src.metadata["model.n_embd"]
    rng = np.random.RandomState(SEED)
    n1 = len(HEADS[1][1])
    w1 = (rng.standard_normal((n1, d)) / np.sqrt(d)).astype(np.float32)
    b1 = (rng.standard_normal(n1) * 0.1).astype(np.float32)
    md = {k: v for k, v in src.typed_metadata().items()}
    md["general.name"] = "qslm reference spike_heads"
    md["general.provenance"] = ("tests/reference/make_heads.py: spike_cls.qslm plus head 1 from "
                                "RandomState(%d)" % SEED)
    md.update(heads_metadata(HEADS))
    tensors = [(n, src.tensors[n], src.tensor_types[n]) for n in src.tensors]
    tensors += [(head_tensor_name(1), w1, "f32"), (head_tensor_name(1, bias=True), b1, "f32")]
    path = os.path.join(DATA_DIR, "spike_heads.qslm")
    size = write_qslm(path, md, tensors)

    qf = read_qslm(path)   # the golden comes from the file as written
    assert qf.heads() == [(t, list(ls)) for t, ls in HEADS]
    _, _, rnn = run_rnn(qf, TOKENS)
    mean = rnn.xo_sum / rnn.n_tokens
    heads = []
    for i, (task, labels) in enumerate(qf.heads()):
        w = torch.from_numpy(qf.float32(head_tensor_name(i)))
        b = torch.from_numpy(qf.float32(head_tensor_name(i, bias=True)))
        heads.append({"task": task, "labels": labels, "cls_logits": raw_floats(w @ mean + b)})
    g = {"model": "spike_heads.qslm", "generator": "tests/reference/make_heads.py",
         "seed": SEED, "tokens": TOKENS,
         "tolerance": {"cls_logits_abs": TOLERANCE["cls_logits_abs"]}, "heads": heads}
    gpath = os.path.join(DATA_DIR, "spike_heads.golden.json")
    write_text(gpath, dump(g) + "\n")
    with open(gpath) as f:
        json.load(f)
    print("spike_heads: %d B model, %d heads, %d B golden" % (size, len(heads), os.path.getsize(gpath)))


if __name__ == "__main__":
    main()
