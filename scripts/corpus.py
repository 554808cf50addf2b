#!/usr/bin/env python3
"""Builds data/corpus/<source>/*.mid from the package registries alone (PyPI music21,
Debian abcmidi, freedoom, pianobooster) and writes data/corpus/SOURCES.md.

Usage: python3 scripts/corpus.py [--out data/corpus] [--bach-limit N] [--jobs N]
Needs: pip install music21; apt-get install abcmidi freedoom pianobooster.
Essen, Aird's Airs and GPL game music are deliberately not used.
"""
import argparse
import glob
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

ABC_SOURCES = {
    # name: (music21 corpus folder, license note)
    "oneills1850": ("oneills1850", "O'Neill's Music of Ireland (1850 tunes, 1903): public domain; ABC via music21's corpus (BSD)"),
    "ryansMammoth": ("ryansMammoth", "Ryan's Mammoth Collection (1883): public domain; ABC via music21's corpus (BSD)"),
    "miscFolk": ("miscFolk", "American fife and Northumbrian minstrelsy tunes (19th c.): public domain; ABC via music21's corpus"),
    "nottingham": ("nottingham-dataset", "Nottingham Music Database sample in music21's corpus (public domain tunes)"),
}


def music21_corpus_dir():
    import music21
    return os.path.join(os.path.dirname(music21.__file__), "corpus")


def abc_to_midi(src_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, abc in enumerate(sorted(glob.glob(os.path.join(src_dir, "*.abc")))):
            # abc2midi writes one file per tune next to its input, named <stem><n>.mid.
            stem = f"t{i:04d}_"
            local = os.path.join(tmp, stem + ".abc")
            shutil.copy(abc, local)
            subprocess.run(["abc2midi", local, "-silent"], cwd=tmp,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for mid in glob.glob(os.path.join(tmp, "*.mid")):
            shutil.move(mid, os.path.join(out_dir, os.path.basename(mid)))
    return len(glob.glob(os.path.join(out_dir, "*.mid")))


def bach_one(args):
    path, out_dir = args
    from music21 import converter
    name = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(out_dir, name + ".mid")
    if os.path.exists(out):
        return True
    try:
        converter.parse(path).write("midi", fp=out)
        return True
    except Exception as e:  # a few chorales fail to parse; they are listed, not fatal
        print(f"bach: skipped {path}: {e}", file=sys.stderr)
        return False


def bach(out_dir, limit, jobs):
    os.makedirs(out_dir, exist_ok=True)
    files = sorted(glob.glob(os.path.join(music21_corpus_dir(), "bach", "bwv*.mxl")))
    if limit:
        files = files[:limit]
    with ProcessPoolExecutor(jobs) as ex:
        list(ex.map(bach_one, [(f, out_dir) for f in files], chunksize=4))
    return len(glob.glob(os.path.join(out_dir, "*.mid")))


def freedoom(out_dir):
    """MIDI lumps (they start with MThd) from Debian's freedoom WADs."""
    os.makedirs(out_dir, exist_ok=True)
    for wad in sorted(glob.glob("/usr/share/games/doom/freedoom*.wad")):
        data = open(wad, "rb").read()
        _, count, directory = struct.unpack_from("<4sii", data, 0)
        tag = os.path.splitext(os.path.basename(wad))[0]
        for i in range(count):
            offset, size, name = struct.unpack_from("<ii8s", data, directory + 16 * i)
            lump = data[offset:offset + size]
            if lump[:4] == b"MThd":
                name = name.rstrip(b"\0").decode("ascii", "replace")
                with open(os.path.join(out_dir, f"{tag}_{name}.mid"), "wb") as f:
                    f.write(lump)
    return len(glob.glob(os.path.join(out_dir, "*.mid")))


def pianobooster(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    root = "/usr/share/doc/pianobooster/courses"
    for path in sorted(glob.glob(os.path.join(root, "**", "*.mid*"), recursive=True)):
        rel = os.path.relpath(path, root).replace(os.sep, "_")
        if path.endswith(".mid.gz"):
            with gzip.open(path, "rb") as src, open(os.path.join(out_dir, rel[:-3]), "wb") as dst:
                dst.write(src.read())
        elif path.endswith(".mid"):
            shutil.copy(path, os.path.join(out_dir, rel))
    return len(glob.glob(os.path.join(out_dir, "*.mid")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--bach-limit", type=int, default=0, help="convert only the first N chorales (0 = all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    t0 = time.time()
    counts = {}
    corpus = music21_corpus_dir()
    for name, (folder, _) in ABC_SOURCES.items():
        counts[name] = abc_to_midi(os.path.join(corpus, folder), os.path.join(a.out, name))
        print(f"{name}: {counts[name]} files", flush=True)
    counts["freedoom"] = freedoom(os.path.join(a.out, "freedoom"))
    print(f"freedoom: {counts['freedoom']} files", flush=True)
    counts["pianobooster"] = pianobooster(os.path.join(a.out, "pianobooster"))
    print(f"pianobooster: {counts['pianobooster']} files", flush=True)
    counts["bach"] = bach(os.path.join(a.out, "bach"), a.bach_limit, a.jobs)
    print(f"bach: {counts['bach']} files", flush=True)
    licenses = dict((k, v[1]) for k, v in ABC_SOURCES.items())
    licenses["freedoom"] = "Freedoom music (Debian package freedoom): BSD-3-Clause"
    licenses["pianobooster"] = "PianoBooster course pieces (Debian package pianobooster): CC-BY"
    licenses["bach"] = "J. S. Bach chorales (public domain), MusicXML encodings from music21's corpus (BSD), rendered to MIDI with music21"
    with open(os.path.join(a.out, "SOURCES.md"), "w") as f:
        f.write("# Corpus sources\n\nBuilt by `python3 scripts/corpus.py` in %.0f s.\n\n" % (time.time() - t0))
        f.write("| source | files | license |\n|---|---|---|\n")
        for k in counts:
            f.write(f"| {k} | {counts[k]} | {licenses[k]} |\n")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
