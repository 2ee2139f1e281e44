"""qslm_format.py: writing and reading .qslm model files (runtime/FORMAT.md, version 1) in Python.

This is the Python twin of runtime/model_writer.c and runtime/model_file.c. It needs only the
standard library and numpy (torch tensors are accepted and converted).

Writing::

    from qslm_format import write_qslm, I64
    write_qslm("m.qslm",
               {"general.architecture": "spikegpt",     # str   -> string
                "model.n_layer": 2,                     # int   -> u64 (negative ints refused)
                "spike.tau": 2.0,                       # float -> f64
                "spike.emb": False,                     # bool  -> bool
                "test.signed": I64(-7),                 # explicit i64
                "tokenizer.json": b"...",               # bytes -> bytes
                "test.also": ("u64", 5)},               # (type name, value) pairs work too
               [("emb.weight", emb, "f32"),             # numpy array or torch tensor
                ("blocks.0.att.key.weight", wk, "f16")])

Metadata and tensors are written in insertion order, as the C writer does, so the same content
gives a byte-identical file from either writer. The write is atomic: a temporary file in the same
directory, fsync, then rename.

Reading::

    f = read_qslm("m.qslm")
    f.metadata["model.n_layer"]      # Python value (int, float, bool, str, bytes)
    f.meta_types["model.n_layer"]    # "u64"
    f.tensors["emb.weight"]          # numpy array: float32 or float16 as stored; the quantized
                                     # types (q8_0 .. q2_1, q4_s .. q2_s) dequantized
                                     # to float32
    f.tensor_types["emb.weight"]     # "f32", "f16", "q4_0", ...

The reader validates what runtime/model_file.c validates (header, every metadata and tensor entry
against the file size, alignment, overlap, the required keys and their types) and raises
QslmFormatError naming the file and the fault. It reads every storage type of FORMAT.md:
dequantize() turns blocks of 32 codes with f16 scales into float32 exactly as the C kernels do
(an f32 multiply, then for qB_1 an f32 add). The writer stores f32 and f16, and quantized
tensors given already packed (Packed(shape, blocks)).

Classifier heads (FORMAT.md "Classification heads"): heads_metadata([(task, [labels])]) gives
the metadata keys to write, head_tensor_name(i[, bias]) each head's tensor names, and
QslmFile.heads() / heads_of(metadata) read them back, checked as runtime/heads.c checks them
(a file with only head.n_classes reads as task "default", labels "0", "1", ...).
rewrite_metadata(src, dst, updates) changes a file's metadata and copies its tensors' bytes.

spike.ffn_hidden: when the metadata has spike.ffn_hidden = true, the file stores every
blocks.N.ffn.value.weight transposed, (n_ffn, d) (FORMAT.md). Both sides convert, so callers
always see nn.Linear's layout (d, n_ffn): the writer transposes a (d, n_ffn) array on the way in
and the reader transposes back (layout="module", the default). layout="stored" passes the
tensor as it is in the file, both ways. Models without the flag are not touched.
"""

import contextlib
import math
import os
import re
import struct

import numpy as np

MAGIC = b"QSLM"
VERSION = 1
HEADER_SIZE = 64
ALIGN = 64
MAX_DIMS = 4
MAX_NAME_LEN = 255
MAX_TENSORS = 1 << 20
MAX_META = 1 << 16

META_U64, META_I64, META_F64, META_BOOL, META_STRING, META_BYTES = 1, 2, 3, 4, 5, 6
META_TYPE_NAMES = {META_U64: "u64", META_I64: "i64", META_F64: "f64", META_BOOL: "bool",
                   META_STRING: "string", META_BYTES: "bytes"}
META_TYPE_CODES = {v: k for k, v in META_TYPE_NAMES.items()}

# Storage types this module can encode from arrays and decode: code -> (name, numpy dtype).
TYPE_F32, TYPE_F16 = 0, 1
TENSOR_TYPES = {TYPE_F32: ("f32", np.dtype("<f4")), TYPE_F16: ("f16", np.dtype("<f2"))}
TENSOR_TYPE_CODES = {name: code for code, (name, _) in TENSOR_TYPES.items()}

# Group-quantized types (FORMAT.md "Storage types"): code -> (name, bits, kind), the kind being
# the block's header: q8_0..q2_0 = 16..21 (KIND_SYM: an f16 d, d*(q - 2^(B-1))), q8_1..q2_1 =
# 22..27 (KIND_MIN: f16 d and m, d*q + m), q4_s..q2_s = 28..30 (KIND_SMALL: one E5M3 byte e,
# d = the f16 whose bits are e << 7, d*(q - 2^(B-1) + 1/2)).
KIND_SYM, KIND_MIN, KIND_SMALL = 0, 1, 2
HEADER_BYTES = {KIND_SYM: 2, KIND_MIN: 4, KIND_SMALL: 1}
QK = 32  # weights per block
QUANT_TYPES = {}
for _i, _bits in enumerate((8, 6, 5, 4, 3, 2)):
    QUANT_TYPES[16 + _i] = ("q%d_0" % _bits, _bits, KIND_SYM)
    QUANT_TYPES[22 + _i] = ("q%d_1" % _bits, _bits, KIND_MIN)
for _i, _bits in enumerate((4, 3, 2)):
    QUANT_TYPES[28 + _i] = ("q%d_s" % _bits, _bits, KIND_SMALL)
del _i, _bits
QUANT_TYPE_CODES = {name: code for code, (name, _, _) in QUANT_TYPES.items()}
# Code bytes per block: the planes of FORMAT.md's "Quantized blocks" table.
_CODE_BYTES = {8: 32, 6: 16 + 8, 5: 16 + 4, 4: 16, 3: 8 + 4, 2: 8}
ALL_TYPE_NAMES = {**{c: n for c, (n, _) in TENSOR_TYPES.items()},
                  **{c: n for c, (n, _, _) in QUANT_TYPES.items()}}

FFN_HIDDEN_KEY = "spike.ffn_hidden"
FFN_VALUE_RE = re.compile(r"blocks\.\d+\.ffn\.value\.weight")

ARCHITECTURES = ("spikegpt", "rwkv4")
REQUIRED_KEYS = {"general.architecture": "string", "model.n_layer": "u64",
                 "model.n_embd": "u64", "model.vocab_size": "u64"}

_KEY_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-")


class QslmFormatError(ValueError):
    """A .qslm file (or the content given to the writer) breaks runtime/FORMAT.md."""


class _Typed:
    """A metadata value with an explicit type (for when Python's type does not say it)."""
    type_name = None

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.value)

    def __eq__(self, other):
        return type(self) is type(other) and self.value == other.value


class U64(_Typed):
    type_name = "u64"


class I64(_Typed):
    type_name = "i64"


class F64(_Typed):
    type_name = "f64"


class Bool(_Typed):
    type_name = "bool"


class String(_Typed):
    type_name = "string"


class Bytes(_Typed):
    type_name = "bytes"


def _align_up(v):
    return (v + ALIGN - 1) // ALIGN * ALIGN


def type_block(code):
    """(weights per block, bytes per block) of storage type `code`."""
    if code in TENSOR_TYPES:
        return 1, TENSOR_TYPES[code][1].itemsize
    name, bits, kind = QUANT_TYPES[code]
    return QK, HEADER_BYTES[kind] + _CODE_BYTES[bits]


def _type_code(ttype):
    """The type code of a type name or code, or None."""
    if isinstance(ttype, str):
        return TENSOR_TYPE_CODES.get(ttype, QUANT_TYPE_CODES.get(ttype))
    if isinstance(ttype, (int, np.integer)) and int(ttype) in ALL_TYPE_NAMES:
        return int(ttype)
    return None


def unpack_codes(planes, bits):
    """The codes q[0..31] of every block: planes (n_blocks, code bytes) uint8 -> (n_blocks, 32)
    uint8, following FORMAT.md's planes (nibbles, crumbs, bit planes) in their order."""
    planes = np.asarray(planes, dtype=np.uint8)
    if bits == 8:
        return planes.copy()
    q = np.zeros((planes.shape[0], QK), dtype=np.uint8)
    pos, shift = 0, 0
    if bits in (6, 5, 4):  # nibbles: byte j = q[j] & 15 | (q[j+16] & 15) << 4
        nib = planes[:, 0:16]
        q[:, :16] = nib & 15
        q[:, 16:] = nib >> 4
        pos, shift = 16, 4
    if bits in (6, 3, 2):  # crumbs of bits shift, shift+1: byte j = c(j) | c(j+8) << 2 | ...
        cr = planes[:, pos:pos + 8]
        for g in range(4):
            q[:, 8 * g:8 * g + 8] |= ((cr >> (2 * g)) & 3) << shift
        pos, shift = pos + 8, shift + 2
    if bits in (5, 3):  # bit plane of bit shift: little-endian u32, bit i = q[i]'s bit
        bp = np.unpackbits(planes[:, pos:pos + 4], axis=1, bitorder="little")
        q |= bp << shift
        pos += 4
    assert pos == _CODE_BYTES[bits], (bits, pos)
    return q


def pack_codes(q, bits):
    """The inverse of unpack_codes: codes (n_blocks, 32), each < 2^bits -> planes uint8."""
    q = np.asarray(q, dtype=np.uint8)
    if q.ndim != 2 or q.shape[1] != QK or (q >> bits).any():
        raise ValueError("codes must be (n_blocks, 32) and below 2^%d" % bits)
    if bits == 8:
        return q.copy()
    parts, shift = [], 0
    if bits in (6, 5, 4):
        parts.append((q[:, :16] & 15) | ((q[:, 16:] & 15) << 4))
        shift = 4
    if bits in (6, 3, 2):
        c = (q >> shift) & 3
        parts.append(c[:, 0:8] | (c[:, 8:16] << 2) | (c[:, 16:24] << 4) | (c[:, 24:32] << 6))
        shift += 2
    if bits in (5, 3):
        parts.append(np.packbits((q >> shift) & 1, axis=1, bitorder="little"))
    return np.concatenate(parts, axis=1).astype(np.uint8)


def dequantize(ttype, buf, shape):
    """float32 values of a tensor of quantized type ttype (name or code) from its stored bytes
    (FORMAT.md: blocks of 32 weights along the last dimension, an f16 scale d (and for qB_1 a
    minimum m; for qB_s an E5M3 byte instead) then the code planes). Rounds as the C kernels:
    d*(q - 2^(B-1)) and d*(q - 2^(B-1) + 1/2) are one f32 multiply (the subtraction is exact);
    d*q + m an f32 multiply then an f32 add."""
    code = _type_code(ttype)
    if code not in QUANT_TYPES:
        raise QslmFormatError("dequantize: %r is not a quantized type" % (ttype,))
    _, bits, kind = QUANT_TYPES[code]
    shape = tuple(int(x) for x in shape)
    n = int(np.prod(shape))
    if not shape or shape[-1] % QK or n % QK:
        raise QslmFormatError("dequantize: shape %s is not a whole number of %d-weight blocks "
                              "per row" % (shape, QK))
    _, bsize = type_block(code)
    nb = n // QK
    raw = np.frombuffer(bytes(buf), dtype=np.uint8)
    if raw.size != nb * bsize:
        raise QslmFormatError("dequantize: %d bytes, %s needs %d" % (raw.size, shape, nb * bsize))
    blocks = raw.reshape(nb, bsize)
    hdr = HEADER_BYTES[kind]
    if kind == KIND_SMALL:  # the E5M3 byte is the top byte of an f16: e << 7
        d = (blocks[:, 0:1].astype("<u2") << 7).view("<f2").astype(np.float32)    # (nb, 1)
    else:
        d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)      # (nb, 1)
    q = unpack_codes(blocks[:, hdr:], bits).astype(np.float32)        # (nb, 32)
    if kind == KIND_MIN:
        m = blocks[:, 2:4].copy().view("<f2").astype(np.float32)
        out = d * q                                                    # f32 multiply
        out = out + m                                                  # then f32 add
    elif kind == KIND_SMALL:
        out = d * (q - np.float32((1 << (bits - 1)) - 0.5))
    else:
        out = d * (q - np.float32(1 << (bits - 1)))
    return out.astype(np.float32).reshape(shape)


class Packed:
    """A tensor already in a storage type's bytes (e.g. quantized blocks), for the writer:
    write_qslm(..., [(name, Packed(shape, data), "q4_0")])."""

    def __init__(self, shape, data):
        self.shape = tuple(int(x) for x in shape)
        self.data = bytes(data)


def _check_key(key):
    if not isinstance(key, str):
        raise QslmFormatError("metadata key %r is not a string" % (key,))
    raw = key.encode("ascii", "replace")
    if not 1 <= len(raw) <= MAX_NAME_LEN or any(c not in _KEY_CHARS for c in raw):
        raise QslmFormatError("metadata key %r is empty, too long or has a character outside "
                              "[a-z0-9._-]" % key)
    return raw


def _typed_value(key, value):
    """(type name, normalized value) for a metadata value given in any accepted form."""
    if isinstance(value, _Typed):
        tname, v = value.type_name, value.value
    elif isinstance(value, tuple):
        if len(value) != 2 or value[0] not in META_TYPE_CODES:
            raise QslmFormatError("metadata %r: a tuple value must be (type name, value) with a "
                                  "type in %s" % (key, sorted(META_TYPE_CODES)))
        tname, v = value
    elif isinstance(value, (bool, np.bool_)):
        tname, v = "bool", value
    elif isinstance(value, (int, np.integer)):
        tname, v = "u64", value
        if int(v) < 0:
            raise QslmFormatError("metadata %r: negative int %d needs an explicit I64(...)"
                                  % (key, int(v)))
    elif isinstance(value, (float, np.floating)):
        tname, v = "f64", value
    elif isinstance(value, str):
        tname, v = "string", value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        tname, v = "bytes", value
    else:
        raise QslmFormatError("metadata %r: cannot store a %s" % (key, type(value).__name__))

    if tname in ("u64", "i64"):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise QslmFormatError("metadata %r: %s value must be an int" % (key, tname))
        v = int(v)
        lo, hi = (0, 2 ** 64 - 1) if tname == "u64" else (-2 ** 63, 2 ** 63 - 1)
        if not lo <= v <= hi:
            raise QslmFormatError("metadata %r: %d is out of range for %s" % (key, v, tname))
    elif tname == "f64":
        v = float(v)
        if not math.isfinite(v):
            raise QslmFormatError("metadata %r: value is not finite" % key)
    elif tname == "bool":
        if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
            raise QslmFormatError("metadata %r: bool value must be True or False" % key)
        v = bool(v)
    elif tname == "string":
        if not isinstance(v, str):
            raise QslmFormatError("metadata %r: string value must be a str" % key)
        if "\0" in v:
            raise QslmFormatError("metadata %r: string contains a NUL byte" % key)
        v = v.encode("utf-8")
    else:  # bytes
        if isinstance(v, str) or not isinstance(v, (bytes, bytearray, memoryview)):
            raise QslmFormatError("metadata %r: bytes value must be bytes" % key)
        v = bytes(v)
    return tname, v


def _encode_meta(key_raw, tname, v):
    out = [struct.pack("<I", len(key_raw)), key_raw, struct.pack("<I", META_TYPE_CODES[tname])]
    if tname == "u64":
        out.append(struct.pack("<Q", v))
    elif tname == "i64":
        out.append(struct.pack("<q", v))
    elif tname == "f64":
        out.append(struct.pack("<d", v))
    elif tname == "bool":
        out.append(b"\x01" if v else b"\x00")
    else:
        out.append(struct.pack("<Q", len(v)))
        out.append(v)
    return b"".join(out)


def _as_numpy(data):
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # a torch tensor, without importing torch
        data = data.detach().cpu()
        if str(data.dtype) == "torch.bfloat16":
            data = data.float()
        data = data.numpy()
    return np.asarray(data)


def _tensor_type_code(name, ttype):
    code = _type_code(ttype)
    if code is None:
        raise QslmFormatError("tensor %r: unknown or unsupported type %r (this writer knows "
                              "%s)" % (name, ttype, sorted(ALL_TYPE_NAMES.values())))
    return code


def _packed_entry(raw, name, code, packed):
    dims = packed.shape
    if not 1 <= len(dims) <= MAX_DIMS or any(d < 1 for d in dims):
        raise QslmFormatError("tensor %r: bad shape %s" % (name, dims))
    per, bsize = type_block(code)
    n = int(np.prod(dims))
    if dims[-1] % per:
        raise QslmFormatError("tensor %r: last dimension %d is not a whole number of %d-weight "
                              "blocks" % (name, dims[-1], per))
    if len(packed.data) != n // per * bsize:
        raise QslmFormatError("tensor %r: %d bytes of %s data, shape %s needs %d"
                              % (name, len(packed.data), ALL_TYPE_NAMES[code], dims,
                                 n // per * bsize))
    return (raw, code, dims, packed.data)


def _normalize_tensors(tensors, ffn_hidden=None, layout="module"):
    """[(name bytes, type code, dims, data bytes)] in the given order. ffn_hidden: (d, n_ffn)
    when the model has spike.ffn_hidden (ffn.value is then stored transposed)."""
    if isinstance(tensors, dict):
        tensors = [(k,) + (v if isinstance(v, tuple) else (v,)) for k, v in tensors.items()]
    out, seen = [], set()
    for entry in tensors:
        if len(entry) == 2:
            name, data = entry
            ttype = "f32"
        elif len(entry) == 3:
            name, data, ttype = entry
        else:
            raise QslmFormatError("a tensor entry must be (name, array) or (name, array, type)")
        if not isinstance(name, str):
            raise QslmFormatError("tensor name %r is not a string" % (name,))
        raw = name.encode("utf-8")
        if not 1 <= len(raw) <= MAX_NAME_LEN or b"\0" in raw:
            raise QslmFormatError("tensor name %r must be 1..%d bytes without NUL"
                                  % (name, MAX_NAME_LEN))
        if raw in seen:
            raise QslmFormatError("tensor %r added twice" % name)
        seen.add(raw)
        code = _tensor_type_code(name, ttype)
        transposed = ffn_hidden is not None and FFN_VALUE_RE.fullmatch(name) is not None
        if transposed:
            d, n_ffn = ffn_hidden
            want = (d, n_ffn) if layout == "module" else (n_ffn, d)
            got = tuple(data.shape) if hasattr(data, "shape") else None
            if got != want:
                raise QslmFormatError(
                    "tensor %r: spike.ffn_hidden: expected shape %s (%s), got %s" % (
                        name, want, "nn.Linear's layout; the writer transposes it"
                        if layout == "module" else "stored transposed", got))
        if isinstance(data, Packed):
            if transposed and layout == "module":
                raise QslmFormatError("tensor %r: packed data cannot be transposed; give "
                                      "layout='stored'" % name)
            out.append(_packed_entry(raw, name, code, data))
            continue
        if code not in TENSOR_TYPES:
            raise QslmFormatError("tensor %r: type %s needs its blocks given as Packed(shape, "
                                  "bytes); this writer does not quantize" % (name, ttype))
        arr = _as_numpy(data)
        if transposed and layout == "module":
            arr = arr.T
        if not 1 <= arr.ndim <= MAX_DIMS:
            raise QslmFormatError("tensor %r: %d dimensions (must be 1..%d)"
                                  % (name, arr.ndim, MAX_DIMS))
        if any(d < 1 for d in arr.shape):
            raise QslmFormatError("tensor %r: a dimension is zero (shape %s)" % (name, arr.shape))
        if arr.dtype.kind not in "fiub":
            raise QslmFormatError("tensor %r: cannot store dtype %s" % (name, arr.dtype))
        dtype = TENSOR_TYPES[code][1]
        with np.errstate(over="ignore"):
            conv = np.ascontiguousarray(arr, dtype=dtype)
        if arr.dtype.kind == "f" and not np.array_equal(np.isfinite(conv), np.isfinite(arr)):
            raise QslmFormatError("tensor %r: values overflow %s" % (name, TENSOR_TYPES[code][0]))
        out.append((raw, code, tuple(int(d) for d in arr.shape), conv.tobytes()))
    if len(out) > MAX_TENSORS:
        raise QslmFormatError("too many tensors (limit %d)" % MAX_TENSORS)
    return out


def _normalize_meta(metadata):
    items = metadata.items() if isinstance(metadata, dict) else list(metadata)
    out, seen = [], set()
    for key, value in items:
        raw = _check_key(key)
        if raw in seen:
            raise QslmFormatError("metadata key %r given twice" % key)
        seen.add(raw)
        tname, v = _typed_value(key, value)
        out.append((raw, tname, v))
    if len(out) > MAX_META:
        raise QslmFormatError("too many metadata entries (limit %d)" % MAX_META)
    return out


def _ffn_hidden_dims(values):
    """(d, n_ffn) when the metadata {key: value} sets spike.ffn_hidden to true, else None."""
    if values.get(FFN_HIDDEN_KEY) is not True:
        return None
    d = values.get("model.n_embd")
    if not isinstance(d, int) or d < 1:
        return None  # the required-key check reports it
    n_ffn = values.get("model.n_ffn", 4 * d)
    return (d, n_ffn) if isinstance(n_ffn, int) else None


def encode_qslm(metadata, tensors, layout="module"):
    """The bytes of a .qslm file holding metadata (dict or (key, value) pairs, in order) and
    tensors ([(name, array[, 'f32'|'f16'])] or an ordered dict name -> array or (array, type)).
    With spike.ffn_hidden true, ffn.value tensors are given as (d, n_ffn) and stored transposed
    (layout="module"), or given as stored, (n_ffn, d) (layout="stored")."""
    if layout not in ("module", "stored"):
        raise ValueError("layout must be 'module' or 'stored'")
    entries = _normalize_meta(metadata)
    meta = b"".join(_encode_meta(k, t, v) for k, t, v in entries)
    values = {k.decode("ascii"): (v if t in ("bool", "u64") else None) for k, t, v in entries}
    tens = _normalize_tensors(tensors, _ffn_hidden_dims(values), layout)
    table_size = sum(4 + len(n) + 4 + 4 + 8 * len(dims) + 16 for n, _, dims, _ in tens)
    table_offset = HEADER_SIZE + len(meta)
    data_offset = _align_up(table_offset + table_size)

    table, data, offset = [], [], data_offset
    for name, code, dims, blob in tens:
        aligned = _align_up(offset)
        table.append(struct.pack("<I", len(name)) + name +
                     struct.pack("<II", code, len(dims)) +
                     struct.pack("<%dQ" % len(dims), *dims) +
                     struct.pack("<QQ", aligned, len(blob)))
        data.append(b"\0" * (aligned - offset))
        data.append(blob)
        offset = aligned + len(blob)
    file_size = offset

    header = _pack_header(file_size, len(meta), table_offset, table_size, data_offset, len(tens),
                          len(entries))
    pad = b"\0" * (data_offset - table_offset - table_size)
    out = b"".join([header, meta] + table + [pad] + data)
    assert len(out) == file_size
    return out


def _pack_header(file_size, meta_size, table_offset, table_size, data_offset, n_tensors, n_meta):
    """The 64-byte header (FORMAT.md "Header")."""
    header = MAGIC + struct.pack("<IQQQQQQII", VERSION, file_size, HEADER_SIZE, meta_size,
                                 table_offset, table_size, data_offset, n_tensors, n_meta)
    assert len(header) == HEADER_SIZE
    return header


@contextlib.contextmanager
def _atomic_file(path):
    """A file object whose bytes become `path` only if the block ends without an exception:
    written to a temporary file beside it, fsynced, renamed over it; removed on failure, so a
    reader never sees half a model file."""
    path = os.fspath(path)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_qslm(path, metadata, tensors, check=True, layout="module"):
    """Writes a .qslm file atomically (temporary file, fsync, rename). Returns the file size.

    With check (the default) the image is first read back through decode_qslm, so a file missing
    a required key or with a bad value is refused here rather than by the runtime later.
    layout: see encode_qslm (spike.ffn_hidden models only)."""
    blob = encode_qslm(metadata, tensors, layout)
    if check:
        decode_qslm(blob, os.fspath(path), layout)
    with _atomic_file(path) as f:
        f.write(blob)
    return len(blob)


class Lazy:
    """A tensor for write_qslm_stream: its shape (as given, before any transposition) and a
    function that makes the array when the writer reaches it."""

    def __init__(self, shape, make):
        self.shape = tuple(int(d) for d in shape)
        self.make = make


def write_qslm_stream(path, metadata, tensors, layout="module"):
    """write_qslm for models larger than one wants to hold twice: tensors are
    [(name, Lazy, type)] with type f32 or f16, and each is made, checked (as write_qslm checks
    it), written and dropped before the next, so memory is one tensor rather than the file.
    The header, metadata and table are the ones encode_qslm lays out. The file is not read
    back whole (that would hold it all): the metadata is checked for the required keys here
    and the runtime validates the rest on load. Returns the file size."""
    if layout not in ("module", "stored"):
        raise ValueError("layout must be 'module' or 'stored'")
    entries = _normalize_meta(metadata)
    keys = {k.decode("ascii"): t for k, t, _ in entries}
    for key, tname in REQUIRED_KEYS.items():
        if keys.get(key) != tname:
            raise QslmFormatError("metadata %s (%s) is required" % (key, tname))
    meta = b"".join(_encode_meta(k, t, v) for k, t, v in entries)
    values = {k.decode("ascii"): (v if t in ("bool", "u64") else None) for k, t, v in entries}
    hidden = _ffn_hidden_dims(values)
    specs, seen = [], set()
    for name, lazy, ttype in tensors:
        code = _tensor_type_code(name, ttype)
        if code not in TENSOR_TYPES:
            raise QslmFormatError("tensor %r: write_qslm_stream writes f32 and f16 only" % name)
        if name in seen:
            raise QslmFormatError("tensor %r added twice" % name)
        seen.add(name)
        dims = lazy.shape
        if hidden is not None and layout == "module" and FFN_VALUE_RE.fullmatch(name):
            dims = dims[::-1]
        size = int(np.prod(dims)) * np.dtype(TENSOR_TYPES[code][1]).itemsize
        specs.append((name, lazy, ttype, code, dims, size))
    if len(specs) > MAX_TENSORS:
        raise QslmFormatError("too many tensors (limit %d)" % MAX_TENSORS)
    table_size = sum(4 + len(n.encode("utf-8")) + 4 + 4 + 8 * len(dims) + 16
                     for n, _, _, _, dims, _ in specs)
    table_offset = HEADER_SIZE + len(meta)
    data_offset = _align_up(table_offset + table_size)
    table, offset, placed = [], data_offset, []
    for name, _, _, code, dims, size in specs:
        aligned = _align_up(offset)
        raw = name.encode("utf-8")
        table.append(struct.pack("<I", len(raw)) + raw + struct.pack("<II", code, len(dims)) +
                     struct.pack("<%dQ" % len(dims), *dims) + struct.pack("<QQ", aligned, size))
        placed.append(aligned)
        offset = aligned + size
    file_size = offset
    header = _pack_header(file_size, len(meta), table_offset, table_size, data_offset, len(specs),
                          len(entries))
    with _atomic_file(path) as f:
        f.write(header + meta + b"".join(table))
        f.write(b"\0" * (data_offset - table_offset - table_size))
        for (name, lazy, ttype, code, dims, size), at in zip(specs, placed):
            arr = lazy.make()
            if tuple(arr.shape) != lazy.shape:
                raise QslmFormatError("tensor %r: made %s, announced %s"
                                      % (name, tuple(arr.shape), lazy.shape))
            _, _, got_dims, blob = _normalize_tensors([(name, arr, ttype)], hidden, layout)[0]
            del arr
            assert got_dims == dims and len(blob) == size, (name, got_dims, dims)
            f.write(b"\0" * (at - f.tell()))
            f.write(blob)
            del blob
        assert f.tell() == file_size
    return file_size


# ------------------------------------------------------------------------------------ reading


class QslmFile:
    """A validated .qslm file: ordered metadata and tensors (numpy arrays, copied out)."""

    def __init__(self, path, size, metadata, meta_types, tensors, tensor_types, offsets,
                 stored_shapes=None, layout="module"):
        self.path = path
        self.size = size
        self.metadata = metadata          # key -> int | float | bool | str | bytes
        self.meta_types = meta_types      # key -> "u64" | "i64" | "f64" | "bool" | "string" | "bytes"
        self.tensors = tensors            # name -> np.ndarray (float32 or float16; quantized
                                          # types dequantized to float32)
        self.tensor_types = tensor_types  # name -> "f32" | "f16" | "q8_0" ... "q2_s"
        self.offsets = offsets            # name -> absolute offset of the data
        self.stored_shapes = stored_shapes or {n: a.shape for n, a in tensors.items()}
        self.layout = layout              # "module": ffn.value of spike.ffn_hidden transposed
                                          # back to (d, n_ffn); "stored": as in the file

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def typed_metadata(self):
        """The metadata as {key: (type name, value)}, which write_qslm accepts back."""
        return {k: (self.meta_types[k], v) for k, v in self.metadata.items()}

    def float32(self, name):
        """Tensor `name` converted to float32."""
        return self.tensors[name].astype(np.float32)

    def heads(self):
        """[(task name, [label, ...])] of the classification heads (see heads_of)."""
        return heads_of(self.metadata, self.path)


class _Cursor:
    def __init__(self, buf, pos, end, path, what):
        self.buf, self.pos, self.end, self.path, self.what = buf, pos, end, path, what

    def take(self, n, field):
        if n > self.end - self.pos:
            raise QslmFormatError("%s: %s: %s runs past the end of the section (at byte %d)"
                                  % (self.path, self.what, field, self.pos))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self, field):
        return struct.unpack("<I", self.take(4, field))[0]

    def u64(self, field):
        return struct.unpack("<Q", self.take(8, field))[0]


def decode_qslm(buf, path="<memory>", layout="module"):
    """Validates a .qslm image (bytes) and returns a QslmFile. layout="module" (default) gives
    a spike.ffn_hidden model's ffn.value tensors in nn.Linear's layout (d, n_ffn), transposed
    back from the file's (n_ffn, d); layout="stored" leaves them as stored."""
    if layout not in ("module", "stored"):
        raise ValueError("layout must be 'module' or 'stored'")
    buf = bytes(buf)

    def fail(msg, *args):
        raise QslmFormatError("%s: %s" % (path, msg % args))

    size = len(buf)
    if size < HEADER_SIZE:
        fail("file is %d bytes, shorter than the %d-byte header", size, HEADER_SIZE)
    if buf[:4] != MAGIC:
        fail("bad magic %r (not a .qslm file)", buf[:4])
    (version, file_size, meta_offset, meta_size, table_offset, table_size, data_offset,
     tensor_count, meta_count) = struct.unpack("<IQQQQQQII", buf[4:HEADER_SIZE])
    if version != VERSION:
        fail("format version %d, this reader knows version %d", version, VERSION)
    if file_size != size:
        fail("header says %d bytes, file has %d", file_size, size)
    if meta_offset != HEADER_SIZE:
        fail("meta_offset %d, must be %d", meta_offset, HEADER_SIZE)
    if meta_size > size - meta_offset:
        fail("metadata section (%d bytes) runs past the end of the file", meta_size)
    if table_offset != meta_offset + meta_size:
        fail("table_offset %d, must be meta_offset + meta_size = %d",
             table_offset, meta_offset + meta_size)
    if table_size > size - table_offset:
        fail("tensor table (%d bytes) runs past the end of the file", table_size)
    table_end = table_offset + table_size
    if data_offset % ALIGN or not table_end <= data_offset < table_end + ALIGN:
        fail("data_offset %d is not the first multiple of %d at or after the table end %d",
             data_offset, ALIGN, table_end)
    if data_offset > size:
        fail("data_offset %d is past the end of the file", data_offset)
    if any(buf[table_end:data_offset]):
        fail("padding before the tensor data is not zero")
    if tensor_count > MAX_TENSORS:
        fail("%d tensors (limit %d)", tensor_count, MAX_TENSORS)
    if meta_count > MAX_META:
        fail("%d metadata entries (limit %d)", meta_count, MAX_META)

    metadata, meta_types = {}, {}
    cur = _Cursor(buf, meta_offset, table_offset, path, "metadata")
    for i in range(meta_count):
        klen = cur.u32("key length of entry %d" % i)
        if not 1 <= klen <= MAX_NAME_LEN:
            fail("metadata entry %d: key length %d (must be 1..%d)", i, klen, MAX_NAME_LEN)
        kraw = cur.take(klen, "key of entry %d" % i)
        if any(c not in _KEY_CHARS for c in kraw):
            fail("metadata entry %d: key %r has a character outside [a-z0-9._-]", i, kraw)
        key = kraw.decode("ascii")
        if key in metadata:
            fail("metadata key '%s' appears twice", key)
        code = cur.u32("value type of '%s'" % key)
        if code not in META_TYPE_NAMES:
            fail("metadata '%s': unknown value type %d", key, code)
        tname = META_TYPE_NAMES[code]
        if tname == "u64":
            v = cur.u64("value of '%s'" % key)
        elif tname == "i64":
            v = struct.unpack("<q", cur.take(8, "value of '%s'" % key))[0]
        elif tname == "f64":
            v = struct.unpack("<d", cur.take(8, "value of '%s'" % key))[0]
            if not math.isfinite(v):
                fail("metadata '%s': f64 value is not finite", key)
        elif tname == "bool":
            b = cur.take(1, "value of '%s'" % key)[0]
            if b > 1:
                fail("metadata '%s': bool byte is %d, must be 0 or 1", key, b)
            v = bool(b)
        else:
            n = cur.u64("length of '%s'" % key)
            raw = cur.take(n, "%d-byte value of '%s'" % (n, key))
            if tname == "string":
                if b"\0" in raw:
                    fail("metadata '%s': string contains a NUL byte", key)
                try:
                    v = raw.decode("utf-8")
                except UnicodeDecodeError:
                    fail("metadata '%s': string is not valid UTF-8", key)
            else:
                v = raw
        metadata[key] = v
        meta_types[key] = tname
    if cur.pos != table_offset:
        fail("metadata entries end at byte %d, meta_size says %d", cur.pos, table_offset)

    for key, tname in REQUIRED_KEYS.items():
        if key not in metadata:
            fail("required metadata key '%s' is missing", key)
        if meta_types[key] != tname:
            fail("metadata '%s' is %s, must be %s", key, meta_types[key], tname)
        if tname == "u64" and metadata[key] == 0:
            fail("metadata '%s' is 0, must be at least 1", key)
    if metadata["general.architecture"] not in ARCHITECTURES:
        fail("unknown architecture '%s' (expected %s)", metadata["general.architecture"],
             " or ".join(ARCHITECTURES))

    entries = []
    cur = _Cursor(buf, table_offset, table_end, path, "tensor table")
    names = set()
    for i in range(tensor_count):
        nlen = cur.u32("name length of tensor %d" % i)
        if not 1 <= nlen <= MAX_NAME_LEN:
            fail("tensor %d: name length %d (must be 1..%d)", i, nlen, MAX_NAME_LEN)
        nraw = cur.take(nlen, "name of tensor %d" % i)
        if b"\0" in nraw:
            fail("tensor %d: name contains a NUL byte", i)
        name = nraw.decode("utf-8", "replace")
        if nraw in names:
            fail("tensor '%s' appears twice", name)
        names.add(nraw)
        code = cur.u32("type of '%s'" % name)
        n_dims = cur.u32("n_dims of '%s'" % name)
        if not 1 <= n_dims <= MAX_DIMS:
            fail("tensor '%s': %d dimensions (must be 1..%d)", name, n_dims, MAX_DIMS)
        dims = tuple(cur.u64("dims of '%s'" % name) for _ in range(n_dims))
        offset = cur.u64("offset of '%s'" % name)
        nbytes = cur.u64("size of '%s'" % name)
        n = 1
        for d in dims:
            if d == 0 or d > (1 << 62) // n:
                fail("tensor '%s': a dimension is zero or the shape overflows", name)
            n *= d
        if code not in ALL_TYPE_NAMES:
            fail("tensor '%s': unknown or unsupported type %d", name, code)
        tname = ALL_TYPE_NAMES[code]
        dtype = TENSOR_TYPES[code][1] if code in TENSOR_TYPES else None
        per, bsize = type_block(code)
        if dims[-1] % per:
            fail("tensor '%s': last dimension %d is not a whole number of %s's %d-weight blocks",
                 name, dims[-1], tname, per)
        if nbytes != n // per * bsize:
            fail("tensor '%s': size %d, its shape and type need %d", name, nbytes,
                 n // per * bsize)
        if offset % ALIGN or offset < data_offset:
            fail("tensor '%s': offset %d is unaligned or before the data section", name, offset)
        if offset > size or nbytes > size - offset:
            fail("tensor '%s': data runs past the end of the file", name)
        entries.append((offset, nbytes, name, tname, dtype, dims))
    if cur.pos != table_end:
        fail("tensor entries end at byte %d, table_size says %d", cur.pos, table_end)

    prev_end, prev_name = data_offset, None
    for offset, nbytes, name, *_ in sorted(entries, key=lambda e: (e[0], e[1])):
        if offset < prev_end:
            fail("tensor '%s' overlaps tensor '%s'", name, prev_name)
        prev_end, prev_name = offset + nbytes, name

    hidden = _ffn_hidden_dims({k: v for k, v in metadata.items()
                               if meta_types[k] in ("bool", "u64")})
    tensors, tensor_types, offsets, stored_shapes = {}, {}, {}, {}
    for offset, nbytes, name, tname, dtype, dims in entries:
        if dtype is not None:
            arr = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
            arr = arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)
        else:
            arr = dequantize(tname, buf[offset:offset + nbytes], dims)
        stored_shapes[name] = dims
        if hidden is not None and FFN_VALUE_RE.fullmatch(name):
            d, n_ffn = hidden
            if dims != (n_ffn, d):
                fail("tensor '%s' is %s; with spike.ffn_hidden it must be stored transposed, "
                     "(n_ffn, d) = (%d, %d)", name, "x".join(map(str, dims)), n_ffn, d)
            if layout == "module":
                arr = np.ascontiguousarray(arr.T)
        tensors[name] = arr
        tensor_types[name] = tname
        offsets[name] = offset
    heads = heads_of(metadata, path)
    for i, (task, labels) in enumerate(heads):
        w, b = head_tensor_name(i), head_tensor_name(i, bias=True)
        if w in stored_shapes and stored_shapes[w][0] != len(labels):
            fail("tensor '%s' has %d rows but task '%s' has %d labels", w, stored_shapes[w][0],
                 task, len(labels))
    return QslmFile(path, size, metadata, meta_types, tensors, tensor_types, offsets,
                    stored_shapes, layout)


# ------------------------------------------------------------------- classification heads
# FORMAT.md "Classification heads"; the C side is runtime/heads.c.

HEADS_MAX = 16
TASK_NAME_MAX = 32
LABEL_MAX = 64
LEGACY_TASK = "default"
_TASK_RE = re.compile(r"[a-z0-9_-]{1,%d}" % TASK_NAME_MAX)


def head_tensor_name(i, bias=False):
    """Head i's weight or bias tensor: cls.weight / cls.bias for head 0, cls.<i>.* after it
    (runtime/heads.c qr_head_tensor_name)."""
    part = "bias" if bias else "weight"
    return "cls.%s" % part if i == 0 else "cls.%d.%s" % (i, part)


def _check_label(key, k, label):
    raw = label.encode("utf-8") if isinstance(label, str) else bytes(label)
    if not raw:
        return "%s: label %d is empty" % (key, k)
    if len(raw) > LABEL_MAX:
        return "%s: label %d is longer than %d bytes" % (key, k, LABEL_MAX)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "%s: label %d is not valid UTF-8" % (key, k)
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in text):
        return "%s: label %d holds a control character" % (key, k)
    return None


def heads_metadata(heads):
    """The metadata keys for heads = [(task name, [label, ...]), ...], in order (head i's tensors
    are head_tensor_name(i)). Validated as the reader validates them."""
    heads = [(t, list(ls)) for t, ls in heads]
    md = {"head.n_classes": len(heads[0][1]) if heads else 0, "head.n_tasks": len(heads)}
    for i, (task, labels) in enumerate(heads):
        md["head.task.%d.name" % i] = task
        md["head.task.%d.labels" % i] = "\n".join(labels)
    heads_of(md, "<heads_metadata>")
    return md


def heads_of(metadata, path="<metadata>"):
    """[(task name, [label, ...])] from a file's metadata, checked as runtime/heads.c checks it.
    A file with only head.n_classes (written before heads had names) is one task "default" whose
    labels are "0", "1", ..."""
    def fail(msg, *args):
        raise QslmFormatError("%s: %s" % (path, msg % args))

    classes = metadata.get("head.n_classes")
    if "head.n_tasks" not in metadata:
        if "head.task.0.name" in metadata:
            fail("metadata 'head.task.0.name' without head.n_tasks")
        if not classes:
            return []
        return [(LEGACY_TASK, [str(c) for c in range(classes)])]
    n = metadata["head.n_tasks"]
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= HEADS_MAX:
        fail("head.n_tasks is %r (at most %d)", n, HEADS_MAX)
    heads = []
    for i in range(n):
        key = "head.task.%d.name" % i
        name = metadata.get(key)
        if name is None:
            fail("metadata '%s' is missing (head.n_tasks says the head exists)", key)
        if not isinstance(name, str) or not _TASK_RE.fullmatch(name):
            fail("metadata '%s': a task name is 1..%d characters of a-z 0-9 _ -", key, TASK_NAME_MAX)
        for j, (other, _) in enumerate(heads):
            if other == name:
                fail("heads %d and %d are both named '%s'", j, i, name)
        key = "head.task.%d.labels" % i
        text = metadata.get(key)
        if text is None:
            fail("metadata '%s' is missing (head.n_tasks says the head exists)", key)
        if not isinstance(text, str):
            fail("metadata '%s' must be a string", key)
        labels = text.split("\n")
        for k, label in enumerate(labels):
            why = _check_label(key, k, label)
            if why:
                fail("metadata %s", why)
            if label in labels[:k]:
                fail("metadata '%s': labels %d and %d are both '%s'", key, labels.index(label), k, label)
        heads.append((name, labels))
    if classes is not None and classes != (len(heads[0][1]) if heads else 0):
        fail("head.n_classes is %d but head 0 has %d labels", classes, len(heads[0][1]) if heads else 0)
    return heads


def rewrite_metadata(src, dst, updates, drop=()):
    """Copies the .qslm file src to dst with metadata keys set (updates: dict, values as for
    write_qslm; an existing key keeps its place, a new one goes last) and the keys in drop
    removed. The tensor table keeps its order and every tensor's bytes are copied unchanged; only
    the offsets move with the metadata section. Returns dst's size."""
    src, dst = os.fspath(src), os.fspath(dst)
    with open(src, "rb") as f:
        buf = f.read()
    old = decode_qslm(buf, src, layout="stored")
    (_, _, _, meta_size, table_offset, table_size, data_offset, n_tensors,
     _) = struct.unpack_from("<IQQQQQQII", buf, 4)
    md = {k: v for k, v in old.typed_metadata().items() if k not in drop}
    for k, v in updates.items():
        md[k] = v
    entries = _normalize_meta(md)
    meta = b"".join(_encode_meta(k, t, v) for k, t, v in entries)
    new_table_offset = HEADER_SIZE + len(meta)
    new_data_offset = _align_up(new_table_offset + table_size)
    shift = new_data_offset - data_offset
    table = bytearray(buf[table_offset:table_offset + table_size])
    pos = 0
    for _ in range(n_tensors):   # move each entry's offset by the shift
        (nlen,) = struct.unpack_from("<I", table, pos)
        pos += 4 + nlen
        _, ndims = struct.unpack_from("<II", table, pos)
        pos += 8 + 8 * ndims
        (off,) = struct.unpack_from("<Q", table, pos)
        struct.pack_into("<Q", table, pos, off + shift)
        pos += 16
    assert pos == table_size
    file_size = len(buf) + shift
    header = _pack_header(file_size, len(meta), new_table_offset, table_size, new_data_offset,
                          n_tensors, len(entries))
    pad = b"\0" * (new_data_offset - new_table_offset - table_size)
    out = b"".join([header, meta, bytes(table), pad, buf[data_offset:]])
    assert len(out) == file_size
    decode_qslm(out, dst, layout="stored")
    with _atomic_file(dst) as f:
        f.write(out)
    return file_size


def read_qslm(path, layout="module"):
    """Reads and validates the .qslm file at path (layout: see decode_qslm)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    return decode_qslm(buf, path, layout)


if __name__ == "__main__":
    import sys

    for p in sys.argv[1:]:
        qf = read_qslm(p)
        print("%s: %d bytes, %d metadata, %d tensors" % (p, qf.size, len(qf.metadata),
                                                         len(qf.tensors)))
        for k, v in qf.metadata.items():
            shown = ("<%d bytes>" % len(v)) if isinstance(v, bytes) else repr(v)
            if len(shown) > 100:
                shown = shown[:97] + "..."
            print("  %-28s %-6s %s" % (k, qf.meta_types[k], shown))
        for name, arr in qf.tensors.items():
            print("  %-40s %-4s %s" % (name, qf.tensor_types[name],
                                       "x".join(map(str, qf.stored_shapes[name]))))
