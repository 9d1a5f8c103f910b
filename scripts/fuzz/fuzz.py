#!/usr/bin/env python3
"""Fuzzing campaign against the release `segformer` binary.

Mutates ONNX models, input tensors (.pb), images (PNG/JPEG) and training checkpoints (see mutators.py),
runs the command that reads each mutant under a time limit and an address-space limit, and classifies
what happened:

  ok           exit 0
  error        a documented exit code (1, 3, 4, 64) with an error line
  bad-exit     any other exit code, or a documented one without an error line
  signal       killed by a signal (a crash, a trap, an abort)
  hang         still running at the time limit (killed)
  over-budget  peak RSS above --rss-limit, or an allocation failure

Seeded: mutant N of seed S is always the same file and command (`--only N` reruns one). Mutants that
end in signal, hang or over-budget are kept under OUT/findings/ with the command to reproduce them.
Exit status: 1 when any mutant ended in signal, hang or over-budget, else 0.

Usage: scripts/fuzz/fuzz.py [--binary .build/release/segformer] [--count 300] [--seed 1] [--jobs 2]
"""
import argparse
import collections
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mutators  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
FIXTURES = os.path.join(ROOT, "Tests/TestSupport/Fixtures")
DOCUMENTED_EXITS = {1, 3, 4, 64}
FAILING = ("signal", "hang", "over-budget")
# Which kind of file each mutant is, with its share of the campaign.
KINDS = [("model", 45), ("tensor", 20), ("image", 20), ("checkpoint", 15)]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, ".build/release/segformer"))
    p.add_argument("--count", type=int, default=300, help="mutants to run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    p.add_argument("--timeout", type=float, default=30, help="seconds per run before it counts as a hang")
    p.add_argument("--max-memory", default="1G", help="the --max-memory given to the commands")
    p.add_argument("--max-work", default="50G",
                   help="the --max-work given to the commands (multiply-adds): a mutant may ask for a valid "
                        "model that would compute for hours; with the budget it must say so instead of running")
    p.add_argument("--rss-limit", type=int, default=1536, help="MB of peak RSS above which a run is over budget")
    p.add_argument("--address-space", type=int, default=8192, help="MB of address space per run (ulimit -v)")
    p.add_argument("--out", default=None, help="folder for findings and scratch (default: a temporary folder)")
    p.add_argument("--only", type=int, default=None, help="run just mutant N (to reproduce a finding)")
    p.add_argument("--kinds", default=",".join(k for k, _ in KINDS), help="comma-separated subset of " + ", ".join(k for k, _ in KINDS))
    return p.parse_args()


class Campaign:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="segformer-fuzz-"))
        self.seeds = os.path.join(self.out, "seeds")
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.kinds = [(k, w) for k, w in KINDS if k in args.kinds.split(",")]

    # MARK: seed corpus

    def prepare(self):
        os.makedirs(self.seeds, exist_ok=True)
        seg = os.path.join(FIXTURES, "tiny-segformer")
        self.models = [os.path.join(seg, f) for f in ("model.op12.onnx", "model.op14.onnx", "model.op17.onnx")]
        self.models.append(os.path.join(FIXTURES, "tiny-classifier/model.onnx"))
        self.model = os.path.join(seg, "model.op17.onnx")
        self.classifier = os.path.join(FIXTURES, "tiny-classifier/model.onnx")
        self.tensors = [os.path.join(seg, "test_data_set_0/input_0.pb")]
        images = os.path.join(FIXTURES, "images")
        self.images = [os.path.join(images, f) for f in ("rgb.png", "rgb.jpg", "gray.png", "palette.png",
                                                        "rgba.png", "rgb_progressive_420.jpg", "gray.jpg")]
        self.dataset = os.path.join(self.seeds, "data")
        self.checkpoint_run = os.path.join(self.seeds, "run")
        if "checkpoint" in dict(self.kinds) and not self.make_checkpoint():
            print("warning: no seed checkpoint (train failed); checkpoint mutants skipped", file=sys.stderr)
            self.kinds = [(k, w) for k, w in self.kinds if k != "checkpoint"]

    def train_args(self, output):
        return ["train", self.model, "--images", os.path.join(self.dataset, "images"),
                "--masks", os.path.join(self.dataset, "masks"), "--batch-size", "1", "--crop", "32", "--size", "32",
                "--val-split", "none", "--checkpoint-every", "1", "--threads", "1", "--output", output]

    def make_checkpoint(self):
        """A two-image dataset and a two-step training run whose checkpoint the mutants start from."""
        for sub in ("images", "masks"):
            os.makedirs(os.path.join(self.dataset, sub), exist_ok=True)
        for i in range(2):
            w = h = 40
            rgb = bytes((x * 5 + y * 3 + i * 40 + c * 20) % 256 for y in range(h) for x in range(w) for c in range(3))
            mask = bytes(1 if x > y else 0 for y in range(h) for x in range(w))
            write_png(os.path.join(self.dataset, "images/s%d.png" % i), w, h, 3, rgb)
            write_png(os.path.join(self.dataset, "masks/s%d.png" % i), w, h, 1, mask)
        shutil.rmtree(self.checkpoint_run, ignore_errors=True)
        r = subprocess.run([self.args.binary] + self.train_args(self.checkpoint_run) + ["--max-steps", "2"],
                           capture_output=True, timeout=300)
        return r.returncode == 0 and os.path.isdir(os.path.join(self.checkpoint_run, "checkpoint"))

    # MARK: one mutant

    def mutant(self, n):
        """(kind, description, command, scratch folder) of mutant n; files are written under scratch."""
        rng = random.Random("%d-%d" % (self.args.seed, n))
        kind = rng.choices([k for k, _ in self.kinds], [w for _, w in self.kinds])[0]
        scratch = os.path.join(self.out, "scratch", str(n))
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        budget = ["--max-memory", self.args.max_memory, "--max-work", self.args.max_work, "--threads", "1"]
        outdir = ["--overwrite"]
        if kind == "model":
            seed = rng.choice(self.models)
            data = open(seed, "rb").read()
            how = rng.choice(["bytes", "wire", "structure", "structure"])
            data = {"bytes": mutators.mutate_bytes, "wire": mutators.mutate_wire,
                    "structure": mutators.mutate_onnx_structure}[how](rng, data)
            path = write(os.path.join(scratch, "model.onnx"), data)
            cmd = rng.choice([
                ["inspect", path, "--shapes"],
                ["inspect", path, "--plan", "--input-shape", "pixel_values=1x3x32x32"],
                ["run", path, "--input", self.tensors[0], "--output-dir", os.path.join(scratch, "out")] + budget + outdir,
                ["bench", path, "--iterations", "1", "--warmup", "0"] + budget,
                ["predict", path, self.images[0], "--out", os.path.join(scratch, "out")] + budget + outdir,
            ])
            what = "%s mutation of %s" % (how, os.path.basename(seed))
        elif kind == "tensor":
            data = open(self.tensors[0], "rb").read()
            how = rng.choice(["bytes", "wire", "wire"])
            data = (mutators.mutate_bytes if how == "bytes" else mutators.mutate_wire)(rng, data)
            path = write(os.path.join(scratch, "input.pb"), data)
            cmd = ["run", self.model, "--input", path, "--output-dir", os.path.join(scratch, "out")] + budget + outdir
            what = "%s mutation of input_0.pb" % how
        elif kind == "image":
            seed = rng.choice(self.images)
            data = open(seed, "rb").read()
            how = rng.choice(["bytes", "header"])
            data = (mutators.mutate_bytes if how == "bytes" else mutators.mutate_image_header)(rng, data)
            path = write(os.path.join(scratch, "image" + os.path.splitext(seed)[1]), data)
            cmd = rng.choice([
                ["predict", self.model, path, "--out", os.path.join(scratch, "out"), "--size", "32"] + budget + outdir,
                ["classify", self.classifier, path] + budget,
            ])
            what = "%s mutation of %s" % (how, os.path.basename(seed))
        else:
            run = os.path.join(scratch, "run")
            shutil.copytree(self.checkpoint_run, run)
            what = "checkpoint: " + mutators.mutate_checkpoint(rng, os.path.join(run, "checkpoint"))
            cmd = self.train_args(run) + ["--resume", "--max-steps", "3", "--max-memory", self.args.max_memory,
                                           "--max-work", self.args.max_work]
        return kind, what, [self.args.binary] + cmd, scratch

    def execute(self, cmd, scratch):
        """Runs cmd under the limits: (outcome, exit status or signal, peak RSS in MB, stderr tail)."""
        address_space = self.args.address_space << 20

        def limits():
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.setsid()

        with open(os.path.join(scratch, "stdout"), "wb") as so, open(os.path.join(scratch, "stderr"), "wb") as se:
            p = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL, preexec_fn=limits, cwd=scratch)
            deadline = time.monotonic() + self.args.timeout
            hung = False
            while True:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline and not hung:
                    hung = True
                    os.killpg(p.pid, signal.SIGKILL)
                time.sleep(0.005)
            p.returncode = 0  # reaped above; keeps Popen from waiting again
        err = open(os.path.join(scratch, "stderr"), "rb").read().decode("utf-8", "replace")
        rss = usage.ru_maxrss // 1024
        allocation_failure = any(s in err for s in ("failed to allocate", "Cannot allocate", "out of memory", "std::bad_alloc"))
        if hung:
            return "hang", None, rss, err
        if rss > self.args.rss_limit or (allocation_failure and not os.WIFEXITED(status)):
            return "over-budget", status, rss, err
        if os.WIFSIGNALED(status):
            return "signal", -os.WTERMSIG(status), rss, err
        code = os.WEXITSTATUS(status)
        if code == 0:
            return "ok", 0, rss, err
        if code in DOCUMENTED_EXITS and "rror" in err:
            return "error", code, rss, err
        return "bad-exit", code, rss, err

    def one(self, n):
        kind, what, cmd, scratch = self.mutant(n)
        outcome, status, rss, err = self.execute(cmd, scratch)
        with self.lock:
            self.counts[outcome] += 1
            self.by_kind[kind][outcome] += 1
            if outcome in FAILING or outcome == "bad-exit":
                keep = os.path.join(self.out, "findings", "%s-%d" % (outcome, n))
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(scratch, keep, ignore=shutil.ignore_patterns("out"))
                with open(os.path.join(keep, "command.txt"), "w") as f:
                    f.write("%s\n%s\nstatus %s, peak RSS %d MB\nreproduce: %s --seed %d --only %d\n" % (
                        what, " ".join(cmd), status, rss, sys.argv[0], self.args.seed, n))
                last = err.strip().splitlines()[-1:] or [""]
                print("%-11s #%d %s: %s | %s" % (outcome, n, kind, what, last[0][:200]), flush=True)
        shutil.rmtree(scratch, ignore_errors=True)

    def run(self):
        self.prepare()
        indices = [self.args.only] if self.args.only is not None else range(self.args.count)
        started = time.monotonic()
        done = 0
        lock = threading.Lock()
        it = iter(indices)

        def worker():
            nonlocal done
            while True:
                with lock:
                    n = next(it, None)
                if n is None:
                    return
                self.one(n)
                with lock:
                    done += 1
                    if done % 250 == 0:
                        print("... %d mutants, %.0f s" % (done, time.monotonic() - started), file=sys.stderr, flush=True)

        threads = [threading.Thread(target=worker) for _ in range(max(1, self.args.jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.report(time.monotonic() - started)
        return 1 if any(self.counts[c] for c in FAILING) else 0

    def report(self, seconds):
        order = ["ok", "error", "bad-exit", "signal", "hang", "over-budget"]
        print("\n%d mutants in %.0f s (seed %d, --max-memory %s, --max-work %s, timeout %g s, RSS limit %d MB)" % (
            sum(self.counts.values()), seconds, self.args.seed, self.args.max_memory, self.args.max_work,
            self.args.timeout, self.args.rss_limit))
        print("%-12s" % "kind" + "".join("%12s" % o for o in order))
        for kind, _ in self.kinds:
            print("%-12s" % kind + "".join("%12d" % self.by_kind[kind][o] for o in order))
        print("%-12s" % "total" + "".join("%12d" % self.counts[o] for o in order))
        if any(self.counts[c] for c in FAILING + ("bad-exit",)):
            print("findings kept in", os.path.join(self.out, "findings"))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_png(path, w, h, channels, pixels):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\0" + pixels[y * w * channels:(y + 1) * w * channels] for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    write(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    args = parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit("no segformer binary at %s (build it: swift build -c release)" % args.binary)
    args.binary = os.path.abspath(args.binary)
    sys.exit(Campaign(args).run())
