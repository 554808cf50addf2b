#!/usr/bin/env python3
"""Writes the release zips from what is already built (scripts/release.sh builds it):

  target/release-packages/Continuo-<version>-linux-x86_64.zip
  target/release-packages/Continuo-<version>-windows-x86_64.zip
  target/release-packages/SHA256SUMS

Each zip holds Continuo/ with the CLAP and VST3 bundles, the command-line tool and the model
folder it reads (models/default), INSTALL.md
(the README's "Install" section), LICENSE, the model card, THIRD-PARTY.md (every crate compiled
in, with its license, from `cargo metadata`) and SHA256SUMS of its own files.

Usage: python3 scripts/package.py --version V [--out target/release-packages]
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PLATFORMS = {
    # name: (CLAP bundle, VST3 bundle, CLI, the CLI's name in the zip)
    "linux-x86_64": ("target/bundled/Continuo.clap", "target/bundled/Continuo.vst3",
                     "target/release/continuo", "continuo"),
    "windows-x86_64": ("target/windows/Continuo.clap", "target/windows/Continuo.vst3",
                       "target/windows/continuo.exe", "continuo.exe"),
}
# What a Linux VST3 bundle holds of other platforms is left out of its zip, and the reverse.
VST3_ARCH = {"linux-x86_64": "x86_64-linux", "windows-x86_64": "x86_64-win"}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def install_text():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(r"^## Install\n(.*?)(?=^## )", readme, re.S | re.M)
    if not m:
        sys.exit("README.md has no '## Install' section to put in the packages")
    return "# Installing Continuo\n" + m.group(1)


def third_party():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    rows = sorted({(p["name"], p["version"], p.get("license") or "see its repository")
                   for p in meta["packages"] if p["name"] not in ("continuo", "xtask")})
    lines = ["# Third-party crates", "",
             "Every crate in Continuo's dependency graph (some are only for building, testing or "
             "other platforms), from `cargo metadata`, with the license its manifest names.", "",
             "| crate | version | license |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {lic} |" for n, v, lic in rows]
    return "\n".join(lines) + "\n"


def files_of(platform):
    """(path in the zip, bytes) of one platform's package."""
    clap, vst3, cli, cli_name = PLATFORMS[platform]
    out = []
    for path in (clap, cli):
        if not os.path.isfile(os.path.join(ROOT, path)):
            sys.exit(f"{path} is missing: run scripts/release.sh (it builds both platforms)")
    out.append(("Continuo.clap", open(os.path.join(ROOT, clap), "rb").read()))
    out.append((cli_name, open(os.path.join(ROOT, cli), "rb").read()))
    vst3_root = os.path.join(ROOT, vst3)
    for dirpath, _, names in os.walk(vst3_root):
        rel = os.path.relpath(dirpath, vst3_root)
        parts = rel.split(os.sep)
        if len(parts) >= 2 and parts[0] == "Contents" and parts[1] != VST3_ARCH[platform]:
            continue
        for name in sorted(names):
            arc = os.path.normpath(os.path.join("Continuo.vst3", rel, name)).replace(os.sep, "/")
            out.append((arc, open(os.path.join(dirpath, name), "rb").read()))
    if not any(a.startswith(f"Continuo.vst3/Contents/{VST3_ARCH[platform]}/") for a, _ in out):
        sys.exit(f"{vst3} holds no {VST3_ARCH[platform]} binary")
    # The CLI reads its model from a folder (the plugin has it compiled in).
    for name in ("config.json", "model.safetensors", "copy_guard.safetensors", "MODEL_CARD.md"):
        out.append((f"models/default/{name}", open(os.path.join(ROOT, "models/default", name), "rb").read()))
    out.append(("INSTALL.md", install_text().encode()))
    out.append(("LICENSE", open(os.path.join(ROOT, "LICENSE"), "rb").read()))
    out.append(("MODEL_CARD.md", open(os.path.join(ROOT, "models/default/MODEL_CARD.md"), "rb").read()))
    out.append(("THIRD-PARTY.md", third_party().encode()))
    out.append(("SHA256SUMS", "".join(f"{sha256(d)}  {a}\n" for a, d in out).encode()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "release-packages"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sums = []
    for platform in PLATFORMS:
        name = f"Continuo-{a.version}-{platform}.zip"
        path = os.path.join(a.out, name)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for arc, data in files_of(platform):
                info = zipfile.ZipInfo(f"Continuo/{arc}", date_time=(2026, 1, 1, 0, 0, 0))
                executable = arc in ("continuo",) or arc.endswith(".so") or "/MacOS/" in arc
                info.external_attr = (0o755 if executable else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        digest = sha256(open(path, "rb").read())
        sums.append(f"{digest}  {name}\n")
        with zipfile.ZipFile(path) as z:
            listing = z.namelist()
        print(f"{name}: {os.path.getsize(path) / 1e6:.1f} MB, {len(listing)} files, sha256 {digest}")
        for entry in listing:
            print(f"  {entry}")
    with open(os.path.join(a.out, "SHA256SUMS"), "w") as f:
        f.writelines(sums)


if __name__ == "__main__":
    main()
