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
    f.tensors["emb.weight"]          # numpy array, float32 or float16 as stored
    f.tensor_types["emb.weight"]     # "f32"

The reader validates what runtime/model_file.c validates (header, every metadata and tensor entry
against the file size, alignment, overlap, the required keys and their types) and raises
QslmFormatError naming the file and the fault.
"""

import math
import os
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

# Storage types this module can encode and decode: code -> (name, numpy dtype).
TYPE_F32, TYPE_F16 = 0, 1
TENSOR_TYPES = {TYPE_F32: ("f32", np.dtype("<f4")), TYPE_F16: ("f16", np.dtype("<f2"))}
TENSOR_TYPE_CODES = {name: code for code, (name, _) in TENSOR_TYPES.items()}

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
    if isinstance(ttype, str):
        if ttype not in TENSOR_TYPE_CODES:
            raise QslmFormatError("tensor %r: unknown or unsupported type %r (this writer knows "
                                  "%s)" % (name, ttype, sorted(TENSOR_TYPE_CODES)))
        return TENSOR_TYPE_CODES[ttype]
    if isinstance(ttype, (int, np.integer)) and int(ttype) in TENSOR_TYPES:
        return int(ttype)
    raise QslmFormatError("tensor %r: unknown or unsupported type %r" % (name, ttype))


def _normalize_tensors(tensors):
    """[(name bytes, type code, dims, data bytes)] in the given order."""
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
        arr = _as_numpy(data)
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


def encode_qslm(metadata, tensors):
    """The bytes of a .qslm file holding metadata (dict or (key, value) pairs, in order) and
    tensors ([(name, array[, 'f32'|'f16'])] or an ordered dict name -> array or (array, type))."""
    entries = _normalize_meta(metadata)
    meta = b"".join(_encode_meta(k, t, v) for k, t, v in entries)
    tens = _normalize_tensors(tensors)
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

    header = (MAGIC + struct.pack("<IQQQQQQII", VERSION, file_size, HEADER_SIZE, len(meta),
                                  table_offset, table_size, data_offset, len(tens),
                                  len(entries)))
    assert len(header) == HEADER_SIZE
    pad = b"\0" * (data_offset - table_offset - table_size)
    out = b"".join([header, meta] + table + [pad] + data)
    assert len(out) == file_size
    return out


def write_qslm(path, metadata, tensors, check=True):
    """Writes a .qslm file atomically (temporary file, fsync, rename). Returns the file size.

    With check (the default) the image is first read back through decode_qslm, so a file missing
    a required key or with a bad value is refused here rather than by the runtime later."""
    blob = encode_qslm(metadata, tensors)
    if check:
        decode_qslm(blob, os.fspath(path))
    path = os.fspath(path)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(blob)


# ------------------------------------------------------------------------------------ reading


class QslmFile:
    """A validated .qslm file: ordered metadata and tensors (numpy arrays, copied out)."""

    def __init__(self, path, size, metadata, meta_types, tensors, tensor_types, offsets):
        self.path = path
        self.size = size
        self.metadata = metadata          # key -> int | float | bool | str | bytes
        self.meta_types = meta_types      # key -> "u64" | "i64" | "f64" | "bool" | "string" | "bytes"
        self.tensors = tensors            # name -> np.ndarray (float32 or float16)
        self.tensor_types = tensor_types  # name -> "f32" | "f16"
        self.offsets = offsets            # name -> absolute offset of the data

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def typed_metadata(self):
        """The metadata as {key: (type name, value)}, which write_qslm accepts back."""
        return {k: (self.meta_types[k], v) for k, v in self.metadata.items()}

    def float32(self, name):
        """Tensor `name` converted to float32."""
        return self.tensors[name].astype(np.float32)


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


def decode_qslm(buf, path="<memory>"):
    """Validates a .qslm image (bytes) and returns a QslmFile."""
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
        if code not in TENSOR_TYPES:
            fail("tensor '%s': unknown or unsupported type %d", name, code)
        tname, dtype = TENSOR_TYPES[code]
        if nbytes != n * dtype.itemsize:
            fail("tensor '%s': size %d, its shape and type need %d", name, nbytes,
                 n * dtype.itemsize)
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

    tensors, tensor_types, offsets = {}, {}, {}
    for offset, nbytes, name, tname, dtype, dims in entries:
        arr = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
        tensors[name] = arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)
        tensor_types[name] = tname
        offsets[name] = offset
    return QslmFile(path, size, metadata, meta_types, tensors, tensor_types, offsets)


def read_qslm(path):
    """Reads and validates the .qslm file at path."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    return decode_qslm(buf, path)


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
            print("  %-40s %-4s %s" % (name, qf.tensor_types[name], "x".join(map(str, arr.shape))))
