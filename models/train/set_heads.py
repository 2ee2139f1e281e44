#!/usr/bin/python3
"""set_heads.py: names a model file's classification heads without touching its tensors.

    /usr/bin/python3 models/train/set_heads.py models/spikegpt-sotu.qslm \\
        --task sentiment --labels negative,positive --bundle models/bundle

Rewrites only the metadata (head.n_tasks, head.task.N.name, head.task.N.labels, head.n_classes;
runtime/FORMAT.md "Classification heads") of each FILE in place: every tensor's bytes are copied
unchanged, only their offsets move with the metadata section (qslm_format.rewrite_metadata).
--task/--labels pairs name the heads in order (head 0 first); each head's label count must match
its tensor's rows.

With --bundle DIR every variant file of DIR/manifest.json is rewritten the same way and the
manifest is edited in place (its text otherwise unchanged): each variant's sha256, file_bytes and
footprint_bytes (the footprint counts the whole file, so it grows by what the file grew),
model.source_sha256 when the FILE given is the bundle's source, and metrics.accuracy_by_task
when the variant has none (runtime/BUNDLE.md: the first head's is metrics.accuracy, the others
null: not measured), as qslm-quant build writes it for a model whose heads have names. Running
it again with the same names changes nothing. A manifest.json.sig would no
longer match: the script refuses a signed bundle (sign it again after, see runtime/BUNDLE.md).
"""

import argparse
import hashlib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qslm_format import QslmFormatError, heads_metadata, read_qslm, rewrite_metadata  # noqa: E402


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def relabel(path, md):
    """Rewrites path's head metadata; returns (old sha256, new sha256, old size, new size)."""
    old_sha, old_size = sha256_file(path), os.path.getsize(path)
    qf = read_qslm(path)
    have = qf.heads()
    if len(have) != md["head.n_tasks"]:
        raise QslmFormatError("%s has %d classifier heads, %d named" % (path, len(have), md["head.n_tasks"]))
    new_size = rewrite_metadata(path, path, md)
    read_qslm(path)  # the label counts are checked against the tensors on the way back in
    return old_sha, sha256_file(path), old_size, new_size


def replace_once(text, old, new, what):
    if text.count(old) != 1:
        raise SystemExit("set_heads.py: %s: expected once in the manifest, found %d" % (what, text.count(old)))
    return text.replace(old, new)


def add_task_accuracy(text, v, tasks):
    """Adds metrics.accuracy_by_task to variant v's block of the manifest text, in the C writer's
    layout (after energy_pj_per_token), unless it is there."""
    if "accuracy_by_task" in v["metrics"]:
        return text
    start = re.search(r'\{[^{}]*"file": "%s"' % re.escape(v["file"]), text).start()
    m = re.compile(r'"accuracy": ([^,\n]+),').search(text, start)
    acc = m.group(1)
    e = re.compile(r'("energy_pj_per_token": [^\n]+)\n(\s*)\}').search(text, m.end())
    indent = e.group(2)
    values = [acc] + ["null"] * (len(tasks) - 1)
    inner = ",\n".join('%s    "%s": %s' % (indent, t, x) for t, x in zip(tasks, values))
    block = '%s,\n%s  "accuracy_by_task": {\n%s\n%s  }\n%s}' % (e.group(1), indent, inner, indent, indent)
    return text[:e.start()] + block + text[e.end():]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help=".qslm files to rewrite in place")
    ap.add_argument("--task", action="append", default=[], help="task name of the next head")
    ap.add_argument("--labels", action="append", default=[], help="its labels, comma-separated")
    ap.add_argument("--bundle", help="a bundle directory whose variants and manifest to rewrite")
    args = ap.parse_args()
    if not args.task or len(args.task) != len(args.labels):
        ap.error("give one --labels per --task (at least one)")
    try:
        md = heads_metadata([(t, ls.split(",")) for t, ls in zip(args.task, args.labels)])
        sources = {}
        for f in args.files:
            old, new, _, size = relabel(f, md)
            sources[old] = new
            print("%s: %d bytes, sha256 %s" % (f, size, new))
        if args.bundle:
            if os.path.exists(os.path.join(args.bundle, "manifest.json.sig")):
                raise SystemExit("set_heads.py: %s is signed; remove the signature, then sign again"
                                 % args.bundle)
            mpath = os.path.join(args.bundle, "manifest.json")
            with open(mpath, encoding="utf-8") as f:
                text = f.read()
            man = json.loads(text)
            src = man["model"]["source_sha256"]
            if src in sources:
                text = replace_once(text, '"source_sha256": "%s"' % src,
                                    '"source_sha256": "%s"' % sources[src], "source_sha256")
            for v in man["variants"]:
                path = os.path.join(args.bundle, v["file"])
                old, new, old_size, size = relabel(path, md)
                if old != v["sha256"] or old_size != v["file_bytes"]:
                    raise SystemExit("set_heads.py: %s does not match its manifest entry" % path)
                grow = size - old_size
                block = re.search(r'\{[^{}]*"file": "%s"' % re.escape(v["file"]), text)
                start = block.start()
                end = text.index('"setting"', start)
                part = text[start:end]
                part = replace_once(part, '"sha256": "%s"' % old, '"sha256": "%s"' % new, "sha256")
                part = replace_once(part, '"file_bytes": %d' % old_size, '"file_bytes": %d' % size,
                                    "file_bytes")
                fp = v["footprint_bytes"]
                part = replace_once(part, '"footprint_bytes": %d' % fp,
                                    '"footprint_bytes": %d' % (fp + grow), "footprint_bytes")
                text = text[:start] + part + text[end:]
                text = add_task_accuracy(text, v, [t for t in args.task])
                print("%s: %d bytes, sha256 %s" % (path, size, new))
            tmp = mpath + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, mpath)
    except QslmFormatError as e:
        print("set_heads.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
