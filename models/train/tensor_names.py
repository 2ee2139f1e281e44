"""tensor_names.py: the SpikeGPT / RWKV-4 tensor names, read from runtime/tensor_names.def.

The C runtime (runtime/model.c), the quantizer's hierarchy (quant/hierarchy.c) and convert.py
use that one table; this module parses its QR_TENSOR(...) lines so Python never spells a name
of its own. The classifier tensors (cls.weight, cls.bias) are not in the table.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
DEF_PATH = os.path.join(os.path.dirname(os.path.dirname(HERE)), "runtime", "tensor_names.def")

_LINE = re.compile(r'^QR_TENSOR\(\s*(INPUT|FIRST|LAYER|OUTPUT|LM_HEAD)\s*,\s*"([a-z0-9_.]+)"\s*,'
                   r'\s*(VEC|MAT|MAT_SPIKE_IN)\s*,\s*([DFV1])\s*,\s*([DFV1])\s*,\s*(\w+)\s*,'
                   r'\s*(\w+)\s*\)\s*$')


class Entry:
    """One QR_TENSOR line: where, name, kind, rows, cols (symbols D F V 1), field, group."""

    def __init__(self, where, name, kind, rows, cols, field, group):
        self.where, self.name, self.kind = where, name, kind
        self.rows, self.cols, self.field, self.group = rows, cols, field, group

    def shape(self, dims):
        """The shape as nn.Module holds it (dims: {"D": d, "F": n_ffn, "V": vocab})."""
        if self.kind == "VEC":
            return (dims[self.rows],)
        return (dims[self.rows], dims[self.cols])


def load(path=DEF_PATH):
    """The table's entries, in file order. Every line starting QR_TENSOR must parse."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.startswith("QR_TENSOR"):
                continue
            m = _LINE.match(line.strip())
            if not m:
                raise ValueError("%s:%d: not a QR_TENSOR line this parser knows" % (path, n))
            out.append(Entry(*m.groups()))
    if not out:
        raise ValueError("%s: no QR_TENSOR lines" % path)
    return out


TABLE = load()


def full_name(entry, layer=None):
    if entry.where in ("FIRST", "LAYER"):
        return "blocks.%d.%s" % (0 if entry.where == "FIRST" else layer, entry.name)
    return entry.name


def model_tensors(n_layer, d, n_ffn, vocab, head_lm):
    """[(name, shape)] of the language-model tensors, in the table's (and the files') order:
    INPUT, then per block (block 0 first its FIRST entries) the LAYER entries, OUTPUT, LM_HEAD."""
    dims = {"D": d, "F": n_ffn, "V": vocab, "1": 1}
    out = [(e.name, e.shape(dims)) for e in TABLE if e.where == "INPUT"]
    for i in range(n_layer):
        if i == 0:
            out += [(full_name(e), e.shape(dims)) for e in TABLE if e.where == "FIRST"]
        out += [(full_name(e, i), e.shape(dims)) for e in TABLE if e.where == "LAYER"]
    out += [(e.name, e.shape(dims)) for e in TABLE if e.where == "OUTPUT"]
    if head_lm:
        out += [(e.name, e.shape(dims)) for e in TABLE if e.where == "LM_HEAD"]
    return out
