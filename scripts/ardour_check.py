#!/usr/bin/env python3
"""Continuo in a real host: Ardour 7 headless (ardour7-lua, Dummy backend) with the VST3.

For each scenario a fresh session is made by scripts/ardour/session.lua: a MIDI track holding
[Continuo Test Primer] -> [Continuo] -> [Continuo Test Recorder]. The primer plays a C-major
triad on beat 1 of bar 1 for two beats; Continuo answers on its own (Auto trigger); the
recorder writes down every note event with its timeline sample. Then this script checks:

- every note-on has its note-off by the time the transport has stopped, and no key is started
  while it already sounds (per channel);
- the answer's first note is on a bar line of the session's meter, and every answer note on
  the model's 1/12-beat grid, to the sample (relative to where the primer's own note-on was
  seen, so that Ardour's latency compensation does not matter);
- with a loop range: Continuo is heard on every pass after the first (a relocation or jump
  does not silence it), and none of its notes is a blip of under 1/64 beat at the loop end.

Scenarios: 4-4 (120 BPM), 3-4 (90 BPM, where Ardour 7.3 reports bar starts as if in 4/4),
loop (120 BPM, a 4-bar loop from the start, three passes) and loop-engaged-while-rolling (the
loop switched on 7 s into a linear roll: Ardour locates through a stopped cycle). Needs the
`ardour` Debian package (`bash scripts/setup.sh` installs it) and a VST3 bundle (`cargo xtask
bundle continuo`, with `--release` or not). Everything Ardour writes goes into a temporary
HOME, not yours. scripts/test.sh (CI) runs it on the debug bundle with allocation checks.

Usage: python3 scripts/ardour_check.py [--bundle target/bundled/Continuo.vst3]
                                       [--scenario 4-4 3-4 loop] [--keep]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

RATE = 48000
PRIMER_KEYS = (60, 64, 67)
# The model's time grid (src/tokens.rs TICKS_PER_BEAT).
GRID_STEPS_PER_BEAT = 12
SCANNER = "/usr/lib/ardour7/ardour-vst3-scanner"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def scenarios():
    """name -> (bpm, (beats per bar, beat unit), loop bars or None, seconds rolled, seconds
    rolled before the loop is engaged (0: loop from the start))"""
    return {
        "4-4": (120.0, (4, 4), None, 14.0, 0),
        "3-4": (90.0, (3, 4), None, 14.0, 0),
        "loop": (120.0, (4, 4), 4, 25.0, 0),
        "loop-engaged-while-rolling": (120.0, (4, 4), 4, 27.0, 7.0),
    }


def prepare_home(home, bundle):
    """A private HOME where Ardour finds the bundle, our Lua scripts and a scanned cache."""
    vst3 = os.path.join(home, ".vst3")
    os.makedirs(vst3)
    installed = os.path.join(vst3, os.path.basename(bundle.rstrip("/")))
    shutil.copytree(bundle, installed)
    # Ardour takes the scanner's cache as stale when it is older than the module, and the
    # scanner stamps it to the whole second: a bundle built less than a second before the
    # scan would never be listed. The copy is dated a minute back.
    back = time.time() - 60
    for folder, _, files in os.walk(installed):
        for name in files:
            os.utime(os.path.join(folder, name), (back, back))
    scripts = os.path.join(home, ".config", "ardour7", "scripts")
    os.makedirs(scripts)
    for name in ("continuo_test_primer.lua", "continuo_test_recorder.lua"):
        shutil.copy(os.path.join(HERE, "ardour", name), scripts)
    # ardour7-lua only reads the plugin cache; the scanner (what Ardour's GUI runs on a scan)
    # writes it.
    # The scanner is linked against Ardour's private libraries (its launcher sets this too).
    env = dict(os.environ, HOME=home, LD_LIBRARY_PATH="/usr/lib/ardour7")
    scan = subprocess.run([SCANNER, "-f", installed], env=env, capture_output=True, text=True,
                          timeout=300)
    if scan.returncode != 0:
        sys.exit(f"ardour-vst3-scanner failed on {installed}:\n{scan.stdout}{scan.stderr}")


def make_loop_range_the_loop(session_file):
    """The range marker the create phase left becomes the session's auto-loop location."""
    with open(session_file) as f:
        xml = f.read()
    patched, n = re.subn(r'name="range1"([^>]*?)flags="IsRangeMarker"',
                         r'name="Loop"\1flags="IsAutoLoop,IsHidden"', xml)
    if n != 1:
        sys.exit(f"no loop range marker in {session_file}")
    with open(session_file, "w") as f:
        f.write(patched)


def run_session(home, workdir, name, bpm, meter, loop_bars, seconds, engage):
    """(events, plugin chain, error): runs the create phase, then the play phase."""
    samples_per_beat = RATE * 60.0 / bpm * (4.0 / meter[1])
    bar = samples_per_beat * meter[0]
    folder = os.path.join(workdir, f"session-{name}")
    env = dict(
        os.environ,
        HOME=home,
        CONTINUO_SESSION=folder,
        CONTINUO_BPM=str(bpm),
        CONTINUO_METER=f"{meter[0]}/{meter[1]}",
        CONTINUO_SECONDS=str(seconds),
        CONTINUO_OFF=str(round(2 * samples_per_beat)),
        CONTINUO_LOOP="" if loop_bars is None else f"0 {round(loop_bars * bar)}",
        CONTINUO_ENGAGE=str(engage),
    )
    outputs = {}
    for phase in ("create", "play"):
        if phase == "play" and loop_bars is not None:
            make_loop_range_the_loop(os.path.join(folder, "continuo.ardour"))
        run = subprocess.run(["ardour7-lua", os.path.join(HERE, "ardour", "session.lua")],
                             env=dict(env, CONTINUO_PHASE=phase), capture_output=True,
                             text=True, timeout=seconds + 240, cwd=workdir)
        outputs[phase] = run.stdout
        for line in run.stdout.splitlines():
            if line.startswith("FAIL"):
                return None, [], f"{phase}: {line}"
        done = "CREATED" if phase == "create" else "DONE"
        if run.returncode != 0 or done not in run.stdout:
            return None, [], (f"{phase}: ardour7-lua exited {run.returncode}:\n"
                              f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    events, plugins = [], []
    for line in outputs["play"].splitlines():
        parts = line.split()
        if parts[:1] == ["EVENT"]:
            events.append(tuple(map(int, parts[1:6])))
        elif parts[:1] == ["PLUGIN"]:
            plugins.append(" ".join(parts[2:]))
    return events, plugins, None


def check(events, bpm, meter, loop_bars):
    """Failures found in one scenario's events (empty when it passes), and a summary line."""
    failures = []
    samples_per_beat = RATE * 60.0 / bpm * (4.0 / meter[1])
    bar = samples_per_beat * meter[0]
    loop_end = None if loop_bars is None else round(loop_bars * bar)

    def mapped(sample):
        # Ardour does not split the cycle that crosses the loop end: what follows the wrap
        # point in that cycle is reported past the loop end and belongs at the loop start.
        return sample - loop_end if loop_end is not None and sample >= loop_end else sample

    notes = [(mapped(s), st, k, v) for s, st, k, v, _ in events]
    ons = [(s, st, k, v) for s, st, k, v in notes if st & 0xF0 == 0x90 and v > 0]
    # The primer is the triad the test primer plays at its own sample (mapped into the loop,
    # every pass plays it there). Continuo may replay that triad in its answer, with the same
    # keys and velocity, at other samples: those notes are the answer's.
    primer_keyed = [e for e in ons if e[2] in PRIMER_KEYS and e[3] == 100]
    if not primer_keyed:
        return ["the primer's note-ons never reached the recorder"], "no primer"
    origin = primer_keyed[0][0]
    primer_ons = [e for e in primer_keyed if e[0] == origin]

    # At a transport stop or locate Ardour itself ends every note a plugin's output left on
    # (its own note tracker, velocity 64), in the same cycle as Continuo's own note-offs
    # (velocity 0): those extra note-offs are Ardour's, not Continuo's.
    ardour_resolved = 0
    sounding = {}
    for s, st, k, v, _ in events:
        ch, kind = st & 0x0F, st & 0xF0
        if kind == 0x80 and v == 64:
            ardour_resolved += 1
            continue
        if kind == 0x90 and v > 0:
            if sounding.get((ch, k), 0) > 0:
                failures.append(f"note-on of key {k} ch {ch + 1} at sample {s} while it sounds")
            sounding[(ch, k)] = sounding.get((ch, k), 0) + 1
        else:
            if sounding.get((ch, k), 0) == 0:
                failures.append(f"note-off of key {k} ch {ch + 1} at sample {s} that does not sound")
            else:
                sounding[(ch, k)] -= 1
    stuck = [key for key, n in sounding.items() if n > 0]
    if stuck:
        failures.append(f"keys left on after stop (channel, key): {stuck}")

    # Continuo's own notes: everything but the primer passing through (same channel, so tell
    # them apart by time: the primer sounds at its own samples on every pass).
    primer_samples = {e[0] for e in primer_ons}
    answer = [e for e in ons if not (e[0] in primer_samples and e[2] in PRIMER_KEYS)]
    if not answer:
        failures.append("Continuo never answered")
        return failures, f"{len(events)} events, no answer"
    first = min(e[0] for e in answer)
    bars_in = (first - origin) / bar
    off_grid = abs(bars_in - round(bars_in)) * bar
    if off_grid > 0.5 + 1e-6:
        failures.append(
            f"the answer starts {bars_in:.3f} bars after the primer, {off_grid:.0f} samples off a bar line")
    # Every answer note starts on the model's grid (1/12 beat) from the primer's downbeat, to
    # the sample (a grid step is not a whole number of samples at 90 BPM: half a sample of
    # rounding is allowed).
    step = samples_per_beat / GRID_STEPS_PER_BEAT
    worst = max(abs((e[0] - origin) / step - round((e[0] - origin) / step)) * step for e in answer)
    if worst > 0.5 + 1e-6:
        failures.append(f"an answer note starts {worst:.2f} samples off the 1/12-beat grid")
    summary = (f"{len(events)} events, {len(answer)} answer notes, first on bar "
               f"{1 + round(bars_in)}, at most {worst:.2f} samples off the grid, "
               f"{ardour_resolved} note-offs of Ardour's own at stops and locates")

    if loop_end is not None:
        # A pass starts where the cycle position goes backwards (the jump to the loop start).
        pass_of = []
        n = 0
        last_cycle = -1
        for s, st, k, v, cycle in events:
            if cycle < last_cycle:
                n += 1
            last_cycle = cycle
            pass_of.append(n)
        heard = {}
        for (s, st, k, v, cycle), p in zip(events, pass_of):
            if st & 0xF0 == 0x90 and v > 0 and not (mapped(s) in primer_samples and k in PRIMER_KEYS):
                heard[p] = heard.get(p, 0) + 1
        jumps = max(pass_of) if pass_of else 0
        silent = [p + 1 for p in range(1, jumps) if heard.get(p, 0) == 0]
        if jumps < 2:
            failures.append(f"the loop jumped {jumps} times in the run; expected at least 2")
        if silent:
            failures.append(f"Continuo was silent on loop pass(es) {silent}")
        # Blips: a note of Continuo's that starts within 1/64 beat of the loop end.
        for s, st, k, v in ons:
            if loop_end - samples_per_beat / 64 < s < loop_end:
                failures.append(f"a note-on of key {k} at sample {s}, just before the loop end")
        summary += f"; {jumps} loop jumps, answer notes per pass {[heard.get(p, 0) for p in range(jumps + 1)]}"
    return failures, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=os.path.join(ROOT, "target/bundled/Continuo.vst3"))
    parser.add_argument("--scenario", nargs="*", default=list(scenarios()))
    parser.add_argument("--keep", action="store_true", help="keep the sessions and the HOME")
    args = parser.parse_args()
    if shutil.which("ardour7-lua") is None:
        sys.exit("ardour7-lua not found: bash scripts/setup.sh (Debian package ardour)")
    if not os.path.isdir(args.bundle):
        sys.exit(f"no VST3 bundle at {args.bundle}: cargo xtask bundle continuo --release")
    workdir = tempfile.mkdtemp(prefix="continuo-ardour-")
    home = os.path.join(workdir, "home")
    prepare_home(home, args.bundle)
    all_ok = True
    for name in args.scenario:
        bpm, meter, loop_bars, seconds, engage = scenarios()[name]
        events, plugins, error = run_session(home, workdir, name, bpm, meter, loop_bars, seconds,
                                             engage)
        if error:
            print(f"{name}: FAIL {error}")
            all_ok = False
            continue
        failures, summary = check(events, bpm, meter, loop_bars)
        status = "ok" if not failures else "FAIL"
        print(f"{name} ({bpm:g} BPM, {meter[0]}/{meter[1]}"
              f"{'' if loop_bars is None else f', {loop_bars}-bar loop'}): {status}: {summary}")
        print(f"  chain: {' -> '.join(plugins)}")
        for f in failures[:20]:
            print(f"  - {f}")
        all_ok &= not failures
    if args.keep:
        print(f"sessions and HOME kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
