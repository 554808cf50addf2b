#!/usr/bin/env python3
"""Writes Continuo's development set of producer primers: two bars each, named
ROLE--name.mid (roles: chords, bass, lead, arp, riff), into examples/dev-primers/.

These are what a producer plays into a MIDI track, written by hand as note lists, in several
genres, meters and keys. They are for tuning and for `continuo eval --primers`; the in-kind
issue is judged on another set. Standard library only: the files are small format-0 SMFs.

Usage: python3 scripts/dev_primers.py [--out examples/dev-primers]
"""
import argparse
import os
import struct

TPB = 480
NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def pitch(name):
    """'C4' = 60, 'F#2', 'Bb3'."""
    n = NAMES[name[0]]
    rest = name[1:]
    while rest and rest[0] in "#b":
        n += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    return n + 12 * (int(rest) + 1)


def chord(names):
    return [pitch(p) for p in names.split()]


def vlq(x):
    out = [x & 0x7F]
    x >>= 7
    while x:
        out.append(0x80 | (x & 0x7F))
        x >>= 7
    return bytes(reversed(out))


def write(path, notes, num=4, den=4, bpm=110):
    """notes: (start beat, length beats, pitch, velocity)."""
    ev = []
    for s, d, p, v in notes:
        on, off = round(s * TPB), round((s + d) * TPB)
        ev.append((on, 1, bytes([0x90, p, v])))
        ev.append((max(off, on + 1), 0, bytes([0x80, p, 0])))
    ev.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    us = round(60_000_000 / bpm)
    track += vlq(0) + bytes([0xFF, 0x51, 3]) + us.to_bytes(3, "big")
    track += vlq(0) + bytes([0xFF, 0x58, 4, num, {2: 1, 4: 2, 8: 3}[den], 24, 8])
    t = 0
    for tick, _, data in ev:
        track += vlq(tick - t) + data
        t = tick
    track += vlq(0) + bytes([0xFF, 0x2F, 0])
    with open(path, "wb") as f:
        f.write(b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPB))
        f.write(b"MTrk" + struct.pack(">I", len(track)) + track)


def block(chords, beats_each, length=None, vel=84, offset=0.0):
    """Block chords, one per `beats_each` beats."""
    out = []
    for i, c in enumerate(chords):
        for p in chord(c):
            out.append((offset + i * beats_each, length or beats_each, p, vel))
    return out


def line(spec, vel=90):
    """'C3:0:1 E3:1:0.5 …' = pitch:start:length."""
    out = []
    for tok in spec.split():
        p, s, d = tok.split(":")
        out.append((float(s), float(d), pitch(p), vel))
    return out


def pattern(pitches, starts, length, vel=90):
    return [(s, length, pitch(p), vel) for p, s in zip(pitches, starts)]


def primers():
    P = {}
    # --- chord progressions -------------------------------------------------------------
    P["chords--pop-I-V-vi-IV"] = (block(["C4 E4 G4", "B3 D4 G4", "C4 E4 A4", "C4 F4 A4"], 2), 4, 4)
    P["chords--house-stabs-Fm"] = ([(b + 0.5, 0.25, p, 100)
                                    for b in range(8)
                                    for p in chord("F4 Ab4 C5" if b < 4 else "Eb4 G4 Bb4")], 4, 4)
    P["chords--neo-soul-Dm9"] = (block(["F3 A3 C4 E4", "E3 G3 C4 D4", "F3 A3 C4 E4", "D3 F#3 B3 E4"], 2, vel=70), 4, 4)
    P["chords--jazz-shells-ii-V-I-Bb"] = (block(["C3 Eb3 Bb3", "F2 Eb3 A3", "Bb2 D3 A3", "Bb2 D3 A3"], 2, 1.5), 4, 4)
    P["chords--gospel-Eb"] = (block(["G3 Bb3 Eb4", "Ab3 C4 Eb4", "Bb3 D4 F4", "G3 C4 Eb4"], 2, vel=92), 4, 4)
    P["chords--ballad-waltz-G-3-4"] = (block(["G3 B3 D4", "E3 G3 B3", "C4 E4 G4", "D4 F#4 A4"], 1.5, 1.5), 3, 4)
    P["chords--reggaeton-Am"] = ([(s, 0.4, p, 96)
                                  for bar in range(2)
                                  for s in [bar * 4 + 0, bar * 4 + 0.75, bar * 4 + 1.5, bar * 4 + 2, bar * 4 + 2.75, bar * 4 + 3.5]
                                  for p in chord("A3 C4 E4" if bar == 0 else "F3 A3 C4")], 4, 4)
    P["chords--6-8-folk-pads-D"] = (block(["D4 F#4 A4", "G3 B3 D4", "A3 C#4 E4", "D4 F#4 A4"], 1.5), 6, 8)
    # --- bass lines ---------------------------------------------------------------------
    P["bass--disco-octaves-Am"] = (pattern(["A1", "A2"] * 4 + ["F1", "F2"] * 4,
                                           [i * 0.5 for i in range(16)], 0.4), 4, 4)
    P["bass--walking-F"] = (pattern(["F2", "A2", "C3", "D3", "Bb2", "A2", "G2", "E2"], range(8), 0.9), 4, 4)
    P["bass--808-Cm"] = (line("C2:0:1.5 C2:1.5:0.5 Eb2:2.5:1 G1:4:1.5 G1:5.75:0.5 Bb1:6.5:1.5", 110), 4, 4)
    P["bass--funk-16ths-E"] = (pattern(["E2", "E2", "E3", "G2", "A2", "E2", "B2", "D3"] * 2,
                                       [0, 0.75, 1, 1.5, 2, 2.75, 3, 3.5, 4, 4.75, 5, 5.5, 6, 6.75, 7, 7.5], 0.2), 4, 4)
    P["bass--reggae-one-drop-G"] = (line("G2:0.5:0.5 B2:1:1 D3:2.5:0.5 C3:4.5:0.5 E3:5:1 G2:6.5:1", 95), 4, 4)
    P["bass--edm-offbeat-Fm"] = (pattern(["F2"] * 4 + ["Db2"] * 4, [i + 0.5 for i in range(8)], 0.4), 4, 4)
    P["bass--rock-eighths-D"] = (pattern(["D2"] * 8 + ["G2"] * 4 + ["A2"] * 4, [i * 0.5 for i in range(16)], 0.45), 4, 4)
    P["bass--waltz-root-fifth-C-3-4"] = (pattern(["C2", "G2", "G2", "F2", "C3", "C3"], [0, 1, 2, 3, 4, 5], 0.8), 3, 4)
    # --- leads ---------------------------------------------------------------------------
    P["lead--pentatonic-hook-A"] = (line("A4:0:0.5 C5:0.5:0.5 D5:1:1 E5:2:0.5 G5:2.5:0.5 E5:3:1 "
                                         "D5:4:0.5 C5:4.5:0.5 A4:5:1.5 G4:6.5:0.5 A4:7:1"), 4, 4)
    P["lead--pop-top-line-E"] = (line("B4:0:1 G#4:1:0.5 E4:1.5:0.5 F#4:2:1 G#4:3:1 "
                                      "A4:4:0.5 G#4:4.5:0.5 F#4:5:1 E4:6:2"), 4, 4)
    P["lead--blues-G"] = (line("G4:0:0.66 Bb4:0.66:0.34 C5:1:0.5 Db5:1.5:0.5 D5:2:1 "
                               "Bb4:4:0.66 G4:4.66:0.34 F4:5:0.5 G4:5.5:2"), 4, 4)
    P["lead--bebop-Bb"] = (pattern(["D5", "C5", "Bb4", "A4", "Ab4", "G4", "F4", "D4",
                                    "Eb4", "E4", "F4", "G4", "A4", "Bb4", "C5", "D5"],
                                   [i * 0.5 for i in range(16)], 0.45), 4, 4)
    P["lead--film-legato-Dm"] = (line("D5:0:2 E5:2:1 F5:3:1 A5:4:3 G5:7:1"), 4, 4)
    P["lead--chiptune-C"] = (pattern(["C5", "E5", "G5", "C6", "G5", "E5", "D5", "F5",
                                      "A5", "D6", "A5", "F5", "E5", "G5", "C6", "G5"],
                                     [i * 0.5 for i in range(16)], 0.25, 100), 4, 4)
    P["lead--trap-Cm"] = (line("G4:0:0.25 G4:0.25:0.25 Eb5:0.75:0.75 D5:1.5:0.5 C5:2:1 "
                               "G4:4:0.25 G4:4.25:0.25 Bb4:4.75:0.75 C5:5.5:0.5 G4:6:1.5"), 4, 4)
    # --- arpeggios -----------------------------------------------------------------------
    P["arp--trance-16ths-Am"] = (pattern(["A3", "C4", "E4", "A4"] * 4 + ["F3", "A3", "C4", "F4"] * 4,
                                         [i * 0.25 for i in range(32)], 0.2), 4, 4)
    P["arp--synthwave-Em"] = (pattern(["E3", "B3", "E4", "G4", "B4", "G4", "E4", "B3",
                                       "C3", "G3", "C4", "E4", "G4", "E4", "C4", "G3"],
                                      [i * 0.5 for i in range(16)], 0.45), 4, 4)
    P["arp--lofi-broken-Fmaj7"] = (line("F3:0:1 A3:0.5:1 C4:1:1 E4:1.5:1.5 "
                                        "D3:4:1 F3:4.5:1 A3:5:1 C4:5.5:1.5", 70), 4, 4)
    P["arp--harp-D-3-4"] = (pattern(["D3", "A3", "D4", "F#4", "A4", "D5",
                                     "G3", "B3", "D4", "G4", "B4", "D5"],
                                    [i * 0.5 for i in range(12)], 0.9), 3, 4)
    P["arp--alberti-C"] = (pattern(["C4", "G4", "E4", "G4"] * 2 + ["B3", "G4", "D4", "G4"] * 2,
                                   [i * 0.5 for i in range(16)], 0.45), 4, 4)
    # --- riffs ---------------------------------------------------------------------------
    P["riff--power-chords-E"] = ([(s, 0.45, p, 110)
                                  for s, root in [(0, "E2"), (0.5, "E2"), (1, "G2"), (1.5, "E2"), (2, "A2"), (3, "G2"),
                                                  (4, "E2"), (4.5, "E2"), (5, "G2"), (5.5, "E2"), (6, "D2"), (7, "C2")]
                                  for p in [pitch(root), pitch(root) + 7]], 4, 4)
    P["riff--house-piano-G"] = ([(s, 0.4, p, 100)
                                 for s in [0, 0.75, 1.5, 2.5, 3, 4, 4.75, 5.5, 6.5, 7]
                                 for p in chord("B3 D4 G4" if s < 4 else "C4 E4 A4")], 4, 4)
    P["riff--funk-chops-E9"] = ([(s, 0.15, p, 95)
                                 for s in [0.25, 0.75, 1.25, 2.25, 2.75, 3.5, 4.25, 4.75, 5.25, 6.25, 6.75, 7.5]
                                 for p in chord("G#3 D4 F#4")], 4, 4)
    P["riff--ska-upstrokes-Bb"] = ([(b + 0.5, 0.3, p, 92)
                                    for b in range(8)
                                    for p in chord("Bb3 D4 F4" if b < 4 else "Eb4 G4 Bb4")], 4, 4)
    P["riff--one-held-chord-Cm"] = (block(["C4 Eb4 G4 Bb4"], 8, 7.5, 80), 4, 4)
    P["riff--octave-synth-Dm-3-4"] = (pattern(["D3", "D4", "F3", "F4", "A3", "A4", "C4", "C5", "A3", "A4", "F3", "F4"],
                                              [i * 0.5 for i in range(12)], 0.4), 3, 4)
    return P


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="examples/dev-primers")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ps = primers()
    for name, (notes, num, den) in ps.items():
        write(os.path.join(a.out, name + ".mid"), notes, num, den)
    roles = sorted({n.split("--")[0] for n in ps})
    print(f"wrote {len(ps)} primers in {len(roles)} roles ({', '.join(roles)}) to {a.out}")


if __name__ == "__main__":
    main()
