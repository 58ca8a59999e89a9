#!/usr/bin/env python3
"""What can be checked of the image without a Docker engine.

1. The Dockerfile builds what the suite builds: its dependency layer (cargo chef cook) and its
   build use the flags of `cargo build --release --locked -p liveops --features full`; the
   runtime stage runs as 65532, exposes 8080-8087, and starts `liveops serve`.
2. The build context that .dockerignore lets through is a complete workspace: the context is
   assembled the way Docker reads .dockerignore (last matching pattern wins, a pattern matching a
   parent directory matches its files, `!` re-includes), copied to a scratch directory, and
   `cargo metadata --no-deps` must load it; the package liveops with its bin and the feature full
   must be there, and every path the sources embed at compile time (sqlx::migrate!,
   include_str!, include_bytes!) must be in it. Build outputs and the VCS directory must not be.

    deploy_image.py REPO_ROOT
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

BUILD = "cargo build --release --locked -p liveops --features full"
FLAGS = ["--release", "--locked", "-p liveops", "--features full"]
PORTS = {str(p) for p in range(8080, 8088)}


def fail(errors: list, msg: str) -> None:
    errors.append(msg)


def dockerfile_lines(path: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#") and not cur:
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip():
            out.append(" ".join(cur.split()))
        cur = ""
    return out


def check_dockerfile(path: str, errors: list) -> None:
    lines = dockerfile_lines(path)
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    if len(stages) < 2:
        fail(errors, "Dockerfile: expected a builder stage and a runtime stage")
        return
    runs = [line for line in lines if line.upper().startswith("RUN ")]
    if not any(BUILD in r for r in runs):
        fail(errors, f"Dockerfile: no RUN with `{BUILD}` (the command scripts/check/deploy.sh names)")
    cook = [r for r in runs if "cargo chef cook" in r]
    if not cook:
        fail(errors, "Dockerfile: no dependency layer (cargo chef cook)")
    for r in cook:
        for flag in FLAGS:
            if flag not in r:
                fail(errors, f"Dockerfile: cargo chef cook lacks {flag}: the cached dependencies would not be the ones the build uses")
    runtime = lines[stages[-1]:]
    first = runtime[0].split()
    if "distroless" not in first[1] and "slim" not in first[1]:
        fail(errors, f"Dockerfile: runtime image {first[1]} is neither distroless nor slim")
    if not any(re.fullmatch(r"USER 65532(:65532)?", line) for line in runtime):
        fail(errors, "Dockerfile: the runtime stage does not run as USER 65532:65532")
    exposed = {p.split("/")[0] for line in runtime if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
    if not PORTS <= exposed:
        fail(errors, f"Dockerfile: EXPOSE lacks {sorted(PORTS - exposed)}")
    if 'ENTRYPOINT ["liveops"]' not in runtime:
        fail(errors, 'Dockerfile: ENTRYPOINT is not ["liveops"]')
    if 'CMD ["serve"]' not in runtime:
        fail(errors, 'Dockerfile: CMD is not ["serve"]')
    if not any(line.startswith("ENV ") and "DATA_DIR=/var/lib/liveops" in line for line in runtime):
        fail(errors, "Dockerfile: DATA_DIR is not /var/lib/liveops in the runtime stage")
    if not any("org.opencontainers.image.source" in line for line in runtime):
        fail(errors, "Dockerfile: no OCI labels in the runtime stage")


def pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regex over slash paths."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            else:
                out += ".*"
                i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.index("]", i)
            out += "[" + pattern[i + 1:j].replace("^", "\\^", 0) + "]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def read_dockerignore(path: str) -> list[tuple[bool, re.Pattern, str]]:
    rules = []
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = os.path.normpath(line[1:] if negate else line).lstrip("/")
        rules.append((negate, pattern_regex(pat), line))
    return rules


def excluded(rules, path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for negate, rx, _ in rules:
        if any(rx.match(p) for p in prefixes):
            result = not negate
    return result


def check_context(root: str, errors: list) -> None:
    ignore = os.path.join(root, ".dockerignore")
    if not os.path.exists(ignore):
        fail(errors, ".dockerignore is missing: the whole repository (target/ too) would be sent as build context")
        return
    rules = read_dockerignore(ignore)
    for path in ("target/release/liveops", "crates/server/target/x", ".git/HEAD", "deploy/k8s/base/kustomization.yaml"):
        if not excluded(rules, path):
            fail(errors, f".dockerignore lets {path} into the build context")
    files = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    kept = [f for f in files if f and os.path.isfile(os.path.join(root, f)) and not excluded(rules, f)]
    with tempfile.TemporaryDirectory(prefix="liveops-context-") as ctx:
        for f in kept:
            dst = os.path.join(ctx, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(root, f), dst)
        for needed in ("Cargo.toml", "Cargo.lock"):
            if not os.path.exists(os.path.join(ctx, needed)):
                fail(errors, f"build context lacks {needed}")
        proc = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--manifest-path",
                               os.path.join(ctx, "Cargo.toml")], capture_output=True, text=True)
        if proc.returncode != 0:
            fail(errors, "cargo cannot load the workspace from the build context:\n" + proc.stderr.strip())
            return
        meta = json.loads(proc.stdout)
        pkg = next((p for p in meta["packages"] if p["name"] == "liveops"), None)
        if not pkg:
            fail(errors, "the build context has no package liveops")
        else:
            if not any(t["name"] == "liveops" and "bin" in t["kind"] for t in pkg["targets"]):
                fail(errors, "package liveops has no bin target liveops")
            if "full" not in pkg["features"]:
                fail(errors, "package liveops has no feature full")
        embedded = re.compile(r'(?:sqlx::migrate!|include_str!|include_bytes!)\(\s*"([^"]+)"')
        count = 0
        for p in meta["packages"]:
            crate_dir = os.path.dirname(p["manifest_path"])
            for dirpath, _, names in os.walk(os.path.join(crate_dir, "src")):
                for n in names:
                    if not n.endswith(".rs"):
                        continue
                    src = os.path.join(dirpath, n)
                    for rel in embedded.findall(open(src, encoding="utf-8").read()):
                        count += 1
                        # migrate! paths are relative to the crate, include_* to the source file.
                        if not any(os.path.exists(os.path.join(d, rel)) for d in (crate_dir, dirpath)):
                            fail(errors, f"{os.path.relpath(src, ctx)} embeds {rel}, which is not in the build context")
        print(f"build context: {len(kept)} files, {len(meta['packages'])} workspace packages, "
              f"{count} compile-time embedded paths present")


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    errors: list[str] = []
    check_dockerfile(os.path.join(root, "deploy/docker/Dockerfile"), errors)
    check_context(root, errors)
    for e in errors:
        print("ERROR " + e)
    if errors:
        return 1
    print(f"Dockerfile builds `{BUILD}` with a matching dependency layer; runtime as 65532, ports 8080-8087, liveops serve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
