"""checkpoint.py: save and resume a training run, so that a long run can be stopped (by its
time limit, Ctrl-C or SIGTERM) and continued later, where it stopped, to the same result.

A checkpoint holds the model's and the optimiser's state, the step and tokens reached, the loss
rows so far, the training seconds spent, and the arguments that define the run (RUN_KEYS). A
resume with different defining arguments (another seed, mix, tokenizer, size or length) is
refused, naming each difference: it would not be the same run. Writes are atomic (a temporary
file renamed over the old one), so a kill during a save leaves the previous checkpoint intact.
"""

import os

import torch

from convert import sha256_file as file_sha256  # noqa: F401 (run_identity's callers use it)

# The arguments that make a run what it is; the others (threads, time limit, paths of the
# outputs, how often to validate or save) may change between resumes.
RUN_KEYS = ("seed", "d", "n_layer", "n_ffn", "ctx", "batch", "lr", "lr_min", "warmup", "wkv",
            "wkv_chunk", "mix", "total_tokens", "spike_ffn_hidden", "ffn_key_gain")
FORMAT = "qslm-train-checkpoint-1"


def run_identity(args, tokenizer_sha256):
    ident = {k: getattr(args, k) for k in RUN_KEYS}
    ident["tokenizer_sha256"] = tokenizer_sha256
    return ident


def save(path, ident, model, opt, state):
    """state: step, tokens, seconds, rows, v0 (plain values)."""
    blob = {"format": FORMAT, "run": ident, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "state": state}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load(path, ident, model, opt):
    """Restores model and optimiser from path and returns the saved state; raises ValueError
    (naming the file and what differs) when it is not a checkpoint of this run."""
    try:
        blob = torch.load(path, map_location="cpu")
    except (OSError, RuntimeError, EOFError) as e:
        raise ValueError("%s: cannot read the checkpoint: %s" % (path, e)) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError("%s: not a %s file" % (path, FORMAT))
    saved = blob["run"]
    diffs = ["%s: checkpoint %r, now %r" % (k, saved.get(k), ident[k])
             for k in ident if saved.get(k) != ident[k]]
    if diffs:
        raise ValueError("%s is a checkpoint of another run; resuming would not continue it:\n  %s"
                         % (path, "\n  ".join(diffs)))
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    return blob["state"]
