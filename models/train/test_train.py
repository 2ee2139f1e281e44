#!/usr/bin/python3
"""test_train.py: tests of train.py's resumable runs (run by hand; needs torch, so not in CI).

    /usr/bin/python3 models/train/test_train.py

On a tiny model (d 32, 1 layer, ctx 16, batch 2) over the real corpora (.data, or $QSLM_DATA_DIR)
and the given tokenizer, each run a separate process as a user would start it:
1. A run stopped by --max-steps and continued with --resume ends with exactly the weights, the
   optimiser state and the loss rows of the same run done in one go (the batches depend on the
   seed and the step only).
2. A run stopped by SIGTERM saves a checkpoint that resumes to the same end as well.
3. Refusals, each with exit 1 and a message naming the problem: --resume of another run (a
   different --mix or --seed), --resume with no checkpoint, a new run over an existing
   checkpoint; and --mix errors (unknown corpus, bad weight) with argparse's exit 2.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRAIN = os.path.join(HERE, "train.py")
failures = []


def check(what, cond, detail=""):
    print("%s: %s%s" % ("ok" if cond else "FAIL", what, "" if cond else " (%s)" % detail),
          flush=True)
    if not cond:
        failures.append(what)


def base_args(work, name, tokenizer, mix="sotu=0.5,brown=0.25,mail=0.25", seed=7):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    for npy in os.listdir(os.path.join(work, "cache")):  # share the encoded corpora
        dst = os.path.join(d, npy)
        if not os.path.exists(dst):
            os.link(os.path.join(work, "cache", npy), dst)
    return [sys.executable, TRAIN, "--seed", str(seed), "--d", "32", "--n-layer", "1",
            "--n-ffn", "64", "--ctx", "16", "--batch", "2", "--warmup", "2", "--threads", "1",
            "--mix", mix, "--total-tokens", str(12 * 32), "--valid-every", "4",
            "--valid-windows", "2", "--tokenizer", tokenizer, "--max-minutes", "30",
            "--out", os.path.join(d, "m.pth"), "--csv", os.path.join(d, "loss.csv"),
            "--svg", os.path.join(d, "loss.svg"), "--checkpoint-minutes", "0"]


def run(cmd, expect=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stdout[-2000:], p.stderr[-2000:])
    return p


def csv_rows(path):
    with open(path) as f:  # every column but seconds
        return [",".join(c for i, c in enumerate(line.strip().split(",")) if i != 4) for line in f]


def same_state(a, b):
    ca, cb = torch.load(a), torch.load(b)
    if ca["state"]["step"] != cb["state"]["step"] or ca["state"]["tokens"] != cb["state"]["tokens"]:
        return False, "steps %d vs %d" % (ca["state"]["step"], cb["state"]["step"])
    for k, v in ca["model"].items():
        if not torch.equal(v, cb["model"][k]):
            return False, "model tensor %s differs" % k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    for k in sa:
        for kk in ("exp_avg", "exp_avg_sq"):
            if not torch.equal(sa[k][kk], sb[k][kk]):
                return False, "optimizer %s of %s differs" % (kk, k)
    return True, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models/tokenizer.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(os.path.join(work, "cache"))
        # encode the corpora once (a zero-step profile run leaves the caches behind)
        first = base_args(work, "warm", args.tokenizer)
        run(first + ["--profile"])
        warm = os.path.join(work, "warm")
        for f in os.listdir(warm):
            if f.endswith(".npy"):
                os.link(os.path.join(warm, f), os.path.join(work, "cache", f))

        one = base_args(work, "one", args.tokenizer)
        p = run(one)
        check("1. an uninterrupted run of 12 steps ends with exit 0", p.returncode == 0)
        two = base_args(work, "two", args.tokenizer)
        p = run(two + ["--max-steps", "5"])
        check("1. a run stopped by --max-steps exits 0 and says how to resume",
              p.returncode == 0 and "--resume" in p.stdout, p.stdout[-300:])
        p = run(two + ["--resume"])
        check("1. --resume continues from step 5", "resumed" in p.stdout and "step 5 of 12"
              in p.stdout, p.stdout[-300:])
        ok, why = same_state(os.path.join(work, "one", "checkpoint.pt"),
                             os.path.join(work, "two", "checkpoint.pt"))
        check("1. stopped + resumed = uninterrupted: weights and optimiser state bit for bit",
              ok, why)
        check("1. ... and the same loss rows", csv_rows(os.path.join(work, "one", "loss.csv")) ==
              csv_rows(os.path.join(work, "two", "loss.csv")))

        three = base_args(work, "three", args.tokenizer)
        proc = subprocess.Popen(three + ["--max-minutes", "30"], stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:  # wait for a few steps, then stop it as systemd or kill would
            if line.startswith("step 5 "):
                proc.send_signal(signal.SIGTERM)
        proc.wait()
        check("2. SIGTERM stops the run with exit 0 and a checkpoint", proc.returncode == 0 and
              os.path.exists(os.path.join(work, "three", "checkpoint.pt")))
        p = run(three + ["--resume"])
        ok, why = same_state(os.path.join(work, "one", "checkpoint.pt"),
                             os.path.join(work, "three", "checkpoint.pt"))
        check("2. resumed after SIGTERM = uninterrupted, bit for bit", p.returncode == 0 and ok, why)

        p = run(base_args(work, "two", args.tokenizer, mix="sotu=0.6,brown=0.2,mail=0.2")
                + ["--resume"], expect=1)
        check("3. --resume with another --mix is refused, naming it",
              p.returncode == 1 and "another run" in p.stderr and "mix:" in p.stderr, p.stderr)
        p = run(base_args(work, "two", args.tokenizer, seed=8) + ["--resume"], expect=1)
        check("3. --resume with another --seed is refused, naming it",
              p.returncode == 1 and "seed:" in p.stderr, p.stderr)
        p = run(base_args(work, "four", args.tokenizer) + ["--resume"], expect=1)
        check("3. --resume without a checkpoint is refused", p.returncode == 1 and
              "no checkpoint" in p.stderr, p.stderr)
        p = run(base_args(work, "two", args.tokenizer), expect=1)
        check("3. a new run over an existing checkpoint is refused", p.returncode == 1 and
              "--resume" in p.stderr, p.stderr)
        p = run(base_args(work, "five", args.tokenizer, mix="sotu=1,news=1"), expect=2)
        check("3. an unknown corpus in --mix is refused", p.returncode == 2 and "news" in p.stderr,
              p.stderr)
        p = run(base_args(work, "five", args.tokenizer, mix="sotu=x"), expect=2)
        check("3. a bad weight in --mix is refused", p.returncode == 2 and "'x'" in p.stderr,
              p.stderr)
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
