#!/usr/bin/env python3
"""Generate a deterministic Git repository through a `git fast-import` stream.

Used by the benchmark scripts: the same arguments always give the same commits, so figures from
different machines and runs compare like with like.

    scripts/gen-repo.py --commits 20000 --files 5000 --refs 10 OUT.git
"""
import argparse
import os
import random
import subprocess
import sys


def stream(args, out):
    rng = random.Random(args.seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(2000)]
    lines_per_file = max(1, args.blob_bytes // 70)
    content = {}
    branch_every = max(1, args.commits // max(1, args.refs))
    for c in range(args.commits):
        out.write(b"commit refs/heads/main\nmark :%d\n" % (c + 1))
        out.write(b"committer Gen <gen@example.com> %d +0000\n" % (1600000000 + c))
        msg = b"generated commit %d\n" % c
        out.write(b"data %d\n%s" % (len(msg), msg))
        changed = range(args.files) if c == 0 else [rng.randrange(args.files) for _ in range(3)]
        for f in changed:
            lines = content.get(f)
            if lines is None:
                lines = [b" ".join(rng.choice(words) for _ in range(10)) for _ in range(lines_per_file)]
            else:
                lines[rng.randrange(len(lines))] = b" ".join(rng.choice(words) for _ in range(10))
            content[f] = lines
            data = b"\n".join(lines) + b"\n"
            out.write(b"M 100644 inline d%d/f%d.txt\ndata %d\n%s\n" % (f % 64, f, len(data), data))
        if c and c % branch_every == 0:
            out.write(b"reset refs/heads/branch-%d\nfrom :%d\n\n" % (c // branch_every, c + 1))
    out.write(b"reset refs/tags/v1\nfrom :%d\n\n" % args.commits)
    out.write(b"done\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=1000)
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--blob-bytes", type=int, default=2800)
    p.add_argument("--refs", type=int, default=10, help="extra branches")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("out")
    args = p.parse_args()
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", args.out], check=True, env=env)
    proc = subprocess.Popen(["git", "-C", args.out, "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE, env=env)
    stream(args, proc.stdin)
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("git fast-import failed")
    subprocess.run(["git", "-C", args.out, "repack", "-a", "-d", "-q"], check=True, env=env)
    subprocess.run(["git", "-C", args.out, "pack-refs", "--all"], check=True, env=env)


if __name__ == "__main__":
    main()
