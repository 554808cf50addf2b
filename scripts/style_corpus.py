#!/usr/bin/env python3
"""Builds the fine-tuning style corpus: electronic-music clips (house, reggaeton, trance,
chiptune, synth-pop) that Continuo's folk/chorale default corpus lacks, from the LMMS demo
projects in Debian's `lmms-common`, keeping only the projects its copyright file licenses as
Artistic-2.0 or BSD-2-Clause (no GPL, no CC-BY-SA).

Each melodic instrument track of a project's song editor becomes one `.mid` clip, as a
producer's folder of exported clips would look. Drum tracks (sample players on one or two
keys, or named as drums) are left out. Whole projects go to one side of the split, so no
track of a held-out song is trained on:

  data/style/train/    clips of the training projects (the folder to fine-tune on)
  data/style/heldout/  clips of the held-out projects (held-out NLL)
  data/style/primers/  ROLE--name.mid: the first 2 bars with notes of each held-out clip
                       (`continuo eval --primers`), role read from the clip's texture

Usage: python3 scripts/style_corpus.py [--lmms /usr/share/lmms/projects] [--out data/style]
Needs `apt-get install lmms-common`; standard library only otherwise.
"""
import argparse
import glob
import os
import re
import shutil
import statistics
import sys
import xml.etree.ElementTree as ET
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_primers import write  # noqa: E402  (the same small SMF writer)

# LMMS project files by license, from /usr/share/doc/lmms-common/copyright (Debian 1.2.2).
LICENSES = {
    "Artistic-2.0": [
        "CapDan-ReggaeTry", "CapDan-ReggaetonTry", "CapDan-ZeroSumGame", "EsoXLB-",
        "Impulslogik-", "Momo64-", "Oglsdl-", "Settel-", "Socceroos-", "TameAnderson-",
        "Thomasso-", "Crunk", "Greshz-", "Surrender-",
    ],
    "BSD-2-Clause": ["Saber-"],
}
# Held out by project (every song of a different producer or genre than most of training).
HELD_OUT = ["CapDan-ReggaetonTry", "Oglsdl-Dr8v2", "Settel-InnerRecreation", "Surrender-Main"]
TICKS_PER_BEAT = 48  # LMMS: 192 ticks per 4/4 bar
DRUM_NAMES = re.compile(
    r"kick|snare|snr|hat|hh|crash|ride|clap|tom|rim|wood|kik|perc|drum|cymbal|shaker|zap|hit|fx|loop",
    re.I,
)
MIN_NOTES = 16


def license_of(name):
    for lic, prefixes in LICENSES.items():
        if any(name.startswith(p) for p in prefixes):
            return lic
    return None


def load(path):
    data = open(path, "rb").read()
    if path.endswith(".mmpz"):
        data = zlib.decompress(data[4:])  # 4-byte length, then zlib
    return ET.fromstring(data)


def track_notes(track):
    """(start beat, length beats, MIDI pitch, velocity) of an instrument track's song patterns."""
    inst = track.find("instrumenttrack")
    base = int(inst.get("basenote", "57")) if inst is not None else 57
    notes = []
    for pat in track.findall("pattern"):
        if pat.get("muted") == "1":
            continue
        offset = int(pat.get("pos", "0"))
        for n in pat.findall("note"):
            length = int(n.get("len", "0"))
            if length <= 0:  # a step of a beat pattern: a hit, not a held note
                length = TICKS_PER_BEAT // 4
            # A key sounds at its pitch relative to the track's base note (57 = A4 = MIDI 69).
            key = int(n.get("key")) + 12 + (57 - base)
            if not 0 <= key <= 127:
                continue
            vel = max(1, min(127, round(int(float(n.get("vol", "100"))) * 127 / 200 + 32)))
            start = (offset + int(n.get("pos", "0"))) / TICKS_PER_BEAT
            notes.append((start, length / TICKS_PER_BEAT, key, vel))
    notes.sort()
    return notes


def plays_samples(track):
    inst = track.find("instrumenttrack")
    plugin = inst.find("instrument") if inst is not None else None
    return plugin is not None and plugin.get("name") == "audiofileprocessor"


def is_drum(track, notes):
    """One key, or a sample player on two keys or named as a drum."""
    pitches = {p for _, _, p, _ in notes}
    if len(pitches) <= 1:
        return True
    return plays_samples(track) and (len(pitches) <= 2 or bool(DRUM_NAMES.search(track.get("name", ""))))


def sample_bass_down(track, notes):
    """A sample player plays its sample's own pitch at the base note, so a bass sample's keys
    are written an octave or two above what sounds: move a track named as a bass down by
    octaves until its median is below E3, where a bass line is read."""
    if not (plays_samples(track) and re.search(r"bass", track.get("name", ""), re.I)):
        return notes
    shift = 0
    while statistics.median(p for _, _, p, _ in notes) + shift >= 52:
        shift -= 12
    return [(s, d, p + shift, v) for s, d, p, v in notes if p + shift >= 0]


def role_of(notes, beats_per_bar):
    """chords / bass / arp / lead / riff from the clip's texture (for primer file names)."""
    onsets = {}
    for s, _, p, _ in notes:
        onsets.setdefault(round(s * 4), []).append(p)
    per_onset = statistics.mean(len(v) for v in onsets.values())
    median = statistics.median(p for _, _, p, _ in notes)
    lengths = [d for _, d, _, _ in notes]
    if per_onset >= 2.5:
        return "chords"
    if per_onset >= 1.6:
        return "riff"
    if median < 52:
        return "bass"
    if statistics.median(lengths) <= 0.3 and len(notes) >= 6 * (notes[-1][0] - notes[0][0] + 1) / beats_per_bar:
        return "arp"
    return "lead"


def primer_of(notes, beats_per_bar, bars=2):
    """The first `bars` bars that hold notes, moved to start at beat 0."""
    first_bar = int(notes[0][0] // beats_per_bar)
    lo, hi = first_bar * beats_per_bar, (first_bar + bars) * beats_per_bar
    return [(s - lo, min(d, hi - s), p, v) for s, d, p, v in notes if lo <= s < hi]


def slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "track"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmms", default="/usr/share/lmms/projects")
    ap.add_argument("--out", default="data/style")
    a = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(a.lmms, "**", "*.mmp*"), recursive=True))
    if not paths:
        sys.exit(f"no LMMS projects under {a.lmms}: apt-get install lmms-common")
    for sub in ("train", "heldout", "primers"):
        shutil.rmtree(os.path.join(a.out, sub), ignore_errors=True)
        os.makedirs(os.path.join(a.out, sub))
    rows = []
    for path in paths:
        project = os.path.splitext(os.path.basename(path))[0]
        lic = license_of(project)
        if lic is None:
            continue
        root = load(path)
        head = root.find("head")
        bpm = float(head.get("bpm", "120"))
        num = int(head.get("timesig_numerator", "4"))
        den = int(head.get("timesig_denominator", "4"))
        if den not in (2, 4, 8):
            num, den = 4, 4
        beats_per_bar = num * 4 / den
        side = "heldout" if any(project.startswith(h) for h in HELD_OUT) else "train"
        kept = 0
        for i, track in enumerate(root.find("song").find("trackcontainer").findall("track")):
            if track.get("type") != "0" or track.get("muted") == "1":
                continue
            notes = track_notes(track)
            if len(notes) < MIN_NOTES or is_drum(track, notes):
                continue
            notes = sample_bass_down(track, notes)
            name = f"{slug(project)}--{i:02d}-{slug(track.get('name', ''))}"
            write(os.path.join(a.out, side, name + ".mid"), notes, num, den, round(bpm))
            if side == "heldout":
                role = role_of(notes, beats_per_bar)
                primer = primer_of(notes, beats_per_bar)
                if len(primer) >= 4:
                    write(os.path.join(a.out, "primers", f"{role}--{name.replace('--', '-')}.mid"),
                          primer, num, den, round(bpm))
            kept += 1
            rows.append((side, project, lic, len(notes)))
        print(f"{project}: {kept} clips ({lic}, {side})")
    with open(os.path.join(a.out, "SOURCES.md"), "w") as f:
        f.write("# Style corpus sources\n\nBuilt by `python3 scripts/style_corpus.py` from Debian "
                "`lmms-common` 1.2.2's demo projects (LMMS community), only those its copyright file "
                "licenses as Artistic-2.0 or BSD-2-Clause. For measuring fine-tuning; not in the "
                "default model's corpus.\n\n| side | project | license | notes |\n|---|---|---|---|\n")
        projects = {}
        for side, project, lic, n in rows:
            k = (side, project, lic)
            projects[k] = projects.get(k, 0) + n
        for (side, project, lic), n in sorted(projects.items()):
            f.write(f"| {side} | {project} | {lic} | {n} |\n")
    for side in ("train", "heldout", "primers"):
        n = len(os.listdir(os.path.join(a.out, side)))
        notes = sum(r[3] for r in rows if r[0] == side)
        print(f"{side}: {n} files" + (f", {notes} notes" if side != "primers" else ""))


if __name__ == "__main__":
    main()
