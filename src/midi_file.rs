//! Standard MIDI files (through midly) to and from [`Phrase`]s.
//!
//! Times become beats from ticks alone (`tick / ticks_per_beat`), so tempo maps never
//! matter: the model is beat-relative. Notes are paired per track, not per channel,
//! because music21 writes every voice on one channel in separate tracks.

use crate::music::phrase::without_overlaps;
use crate::music::{Note, Phrase};
use midly::{
    num::{u15, u28, u4, u7},
    Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind,
};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// The General MIDI percussion channel (10, zero-based 9).
const DRUM_CHANNEL: u8 = 9;
/// Ticks per beat in the files Continuo writes; divisible by 3 and 16.
const WRITE_TICKS_PER_BEAT: u16 = 480;
/// Longest file read (beats): about nine hours at 120 BPM. The tokenizer writes a token per
/// bar, so an unbounded file (a few bytes of maximal delta-times) would be unbounded work.
pub const MAX_FILE_BEATS: f64 = 65_536.0;
/// Longest silence between notes read (beats): 256 bars of 4/4.
pub const MAX_SILENCE_BEATS: f64 = 1024.0;

#[derive(Debug, thiserror::Error)]
pub enum MidiFileError {
    // The OS error is part of the message and deliberately not a `source`: printed as a
    // chain (`{:#}`), it would appear twice.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a readable MIDI file ({reason}); check that it is a Standard MIDI File (.mid)")]
    Parse { path: PathBuf, reason: String },
    #[error("{path} uses SMPTE timecode instead of beats; re-export it with musical (ticks per beat) timing")]
    Timecode { path: PathBuf },
    #[error("{path} holds no notes")]
    NoNotes { path: PathBuf },
    #[error(
        "{path} runs to beat {beats:.0}; Continuo reads files of at most {MAX_FILE_BEATS:.0} beats"
    )]
    TooLong { path: PathBuf, beats: f64 },
    #[error("{path} has {beats:.0} beats of silence before beat {at:.0}; Continuo reads files with silences of at most {MAX_SILENCE_BEATS:.0} beats")]
    LongSilence { path: PathBuf, beats: f64, at: f64 },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What a MIDI file holds, as Continuo sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MidiSong {
    /// All melodic notes (every track, every channel but 10), merged.
    pub melodic: Phrase,
    /// The melodic notes of each track and channel on its own (a bass line, a chord part, a
    /// melody), in file order: what a plugin on one DAW track hears.
    pub parts: Vec<Phrase>,
    /// Notes on channel 10, kept apart: drums are not melodic training data.
    pub drums: Vec<Note>,
    pub ticks_per_beat: u16,
}

/// Reads a file; see [`parse_midi`].
pub fn read_midi(path: &Path) -> Result<MidiSong, MidiFileError> {
    let bytes = std::fs::read(path).map_err(|error| MidiFileError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse_midi(&bytes, path)
}

/// Parses format 0 or 1 MIDI bytes; `path` only names the source in errors.
pub fn parse_midi(bytes: &[u8], path: &Path) -> Result<MidiSong, MidiFileError> {
    // midly 0.5 overflows on some SMPTE divisions in debug builds: refuse them before it reads
    // them (the division is the header's last field, bytes 12–13, top bit set for SMPTE).
    if bytes.len() >= 14 && &bytes[..4] == b"MThd" && bytes[12] & 0x80 != 0 {
        return Err(MidiFileError::Timecode {
            path: path.to_owned(),
        });
    }
    let smf = Smf::parse(bytes).map_err(|e| MidiFileError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let ticks_per_beat = match smf.header.timing {
        Timing::Metrical(t) if t.as_int() > 0 => t.as_int(),
        Timing::Metrical(_) => {
            return Err(MidiFileError::Parse {
                path: path.to_owned(),
                reason: "ticks per beat is 0".into(),
            })
        }
        Timing::Timecode(..) => {
            return Err(MidiFileError::Timecode {
                path: path.to_owned(),
            })
        }
    };
    let tpb = ticks_per_beat as f64;
    let mut melodic = Vec::new();
    // Notes per (track, channel), in order of first appearance.
    let mut parts: Vec<((usize, u8), Vec<Note>)> = Vec::new();
    let mut drums = Vec::new();
    let mut beats_per_bar: Option<f64> = None;

    for (track_index, track) in smf.tracks.iter().enumerate() {
        // Open notes of this track: (channel, key) -> queue of (start tick, velocity).
        let mut open: Vec<VecDeque<(u64, u8)>> = vec![VecDeque::new(); 16 * 128];
        let max_tick = (MAX_FILE_BEATS * tpb) as u64;
        let mut tick: u64 = 0;
        for event in track {
            tick += event.delta.as_int() as u64;
            if tick > max_tick {
                if is_note(&event.kind) {
                    return Err(MidiFileError::TooLong {
                        path: path.to_owned(),
                        beats: tick as f64 / tpb,
                    });
                }
                // Meta events after the last note are harmless.
                continue;
            }
            match event.kind {
                // The first time signature names the bar length; later changes are rare in
                // the corpus and are treated as that bar length.
                TrackEventKind::Meta(MetaMessage::TimeSignature(num, denom_pow, _, _))
                    if beats_per_bar.is_none() && num > 0 =>
                {
                    beats_per_bar = Some(num as f64 * 4.0 / 2f64.powi(denom_pow as i32));
                }
                TrackEventKind::Midi { channel, message } => {
                    let ch = channel.as_int();
                    let (key, on_vel) = match message {
                        MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int()),
                        MidiMessage::NoteOff { key, .. } => (key.as_int(), 0),
                        _ => continue,
                    };
                    let slot = &mut open[ch as usize * 128 + key as usize];
                    if on_vel > 0 {
                        slot.push_back((tick, on_vel));
                    } else if let Some((start, velocity)) = slot.pop_front() {
                        // First in, first out: a repeated key releases its oldest note.
                        let note = Note {
                            start: start as f64 / tpb,
                            duration: (tick - start) as f64 / tpb,
                            pitch: key,
                            velocity,
                        };
                        if note.duration <= 0.0 {
                            continue;
                        }
                        if ch == DRUM_CHANNEL {
                            drums.push(note);
                        } else {
                            melodic.push(note);
                            let part = (track_index, ch);
                            match parts.iter_mut().find(|(k, _)| *k == part) {
                                Some((_, notes)) => notes.push(note),
                                None => parts.push((part, vec![note])),
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if melodic.is_empty() && drums.is_empty() {
        return Err(MidiFileError::NoNotes {
            path: path.to_owned(),
        });
    }
    check_silences(&melodic, path)?;
    let bpb = beats_per_bar
        .filter(|b| (0.5..=16.0).contains(b))
        .unwrap_or(4.0);
    crate::music::phrase::sort_notes(&mut drums);
    Ok(MidiSong {
        melodic: Phrase::new(melodic, bpb),
        parts: parts
            .into_iter()
            .map(|(_, notes)| Phrase::new(notes, bpb))
            .collect(),
        drums,
        ticks_per_beat,
    })
}

fn is_note(kind: &TrackEventKind<'_>) -> bool {
    matches!(
        kind,
        TrackEventKind::Midi {
            message: MidiMessage::NoteOn { .. } | MidiMessage::NoteOff { .. },
            ..
        }
    )
}

/// Refuses a silence longer than [`MAX_SILENCE_BEATS`] between melodic notes.
fn check_silences(notes: &[Note], path: &Path) -> Result<(), MidiFileError> {
    let mut starts: Vec<(f64, f64)> = notes
        .iter()
        .map(|n| (n.start, n.start + n.duration))
        .collect();
    starts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut sounding_until = starts.first().map_or(0.0, |s| s.0);
    for (start, end) in starts {
        if start - sounding_until > MAX_SILENCE_BEATS {
            return Err(MidiFileError::LongSilence {
                path: path.to_owned(),
                beats: start - sounding_until,
                at: start,
            });
        }
        sounding_until = sounding_until.max(end);
    }
    Ok(())
}

/// One part of a file to write: a phrase on a MIDI channel, with a track name.
pub struct TrackToWrite<'a> {
    pub name: &'a str,
    pub channel: u8,
    pub notes: &'a [Note],
}

/// Writes a format-1 file DAWs open: a tempo/time-signature track, then one track per part,
/// with a note-off for every note. Same-pitch overlaps are cut as one channel would play them.
pub fn write_midi(
    path: &Path,
    tracks: &[TrackToWrite<'_>],
    beats_per_bar: f64,
    tempo_bpm: f64,
) -> Result<(), MidiFileError> {
    let bytes = midi_bytes(tracks, beats_per_bar, tempo_bpm);
    std::fs::write(path, bytes).map_err(|error| MidiFileError::Write {
        path: path.to_owned(),
        error,
    })
}

/// The bytes [`write_midi`] writes.
pub fn midi_bytes(tracks: &[TrackToWrite<'_>], beats_per_bar: f64, tempo_bpm: f64) -> Vec<u8> {
    let tpb = WRITE_TICKS_PER_BEAT as f64;
    let mut all_tracks: Vec<Vec<TrackEvent<'static>>> = Vec::new();

    let us_per_beat = (60_000_000.0 / tempo_bpm.clamp(10.0, 1000.0)).round() as u32;
    let (num, denom_pow) = time_signature_for(beats_per_bar);
    all_tracks.push(vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(us_per_beat.into())),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TimeSignature(num, denom_pow, 24, 8)),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        },
    ]);

    for track in tracks {
        let events = note_events(track.notes, tpb);
        let channel = u4::new(track.channel.min(15));
        let mut out = vec![TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TrackName(leak_name(track.name))),
        }];
        let mut last = 0u64;
        for (t, on, pitch, vel) in events {
            let message = note_message(on, pitch, vel);
            out.push(TrackEvent {
                delta: u28::new((t - last) as u32),
                kind: TrackEventKind::Midi { channel, message },
            });
            last = t;
        }
        out.push(TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        });
        all_tracks.push(out);
    }

    let smf = Smf {
        header: Header::new(
            Format::Parallel,
            Timing::Metrical(u15::new(WRITE_TICKS_PER_BEAT)),
        ),
        tracks: all_tracks,
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)
        .expect("writing MIDI to memory cannot fail");
    bytes
}

/// A file's bytes with the melodic notes that start in `[from_beat, to_beat)` replaced by
/// `notes` (timed in the file's beats); every other event keeps its track, tick and order,
/// so the music outside those beats is unchanged. The new notes go to the track and channel
/// that held most of the replaced ones (else the one with most melodic notes), before that
/// track's end; at a tick they share, new note-offs come before the file's own events and
/// new note-ons after them.
pub fn replace_notes(
    bytes: &[u8],
    path: &Path,
    from_beat: f64,
    to_beat: f64,
    notes: &[Note],
) -> Result<Vec<u8>, MidiFileError> {
    // Parse through the reader first: the same refusals (SMPTE, too long) and a tick rate.
    let tpb = parse_midi(bytes, path)?.ticks_per_beat as f64;
    let smf = Smf::parse(bytes).map_err(|e| MidiFileError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let (from_tick, to_tick) = (
        (from_beat * tpb).round() as u64,
        (to_beat * tpb).round() as u64,
    );
    // Per track: absolute ticks, and which events belong to a replaced note.
    let mut tracks: Vec<Vec<(u64, TrackEventKind)>> = Vec::new();
    let mut removed: Vec<Vec<bool>> = Vec::new();
    // (track, channel) → (replaced notes, melodic notes)
    let mut counts: Vec<((usize, u8), usize, usize)> = Vec::new();
    for (ti, track) in smf.tracks.iter().enumerate() {
        let mut tick = 0u64;
        let events: Vec<(u64, TrackEventKind)> = track
            .iter()
            .map(|e| {
                tick += e.delta.as_int() as u64;
                (tick, e.kind)
            })
            .collect();
        let mut gone = vec![false; events.len()];
        let mut open: Vec<VecDeque<(usize, bool)>> = vec![VecDeque::new(); 16 * 128];
        for (i, &(t, kind)) in events.iter().enumerate() {
            let TrackEventKind::Midi { channel, message } = kind else {
                continue;
            };
            let ch = channel.as_int();
            let (key, on) = match message {
                MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int() > 0),
                MidiMessage::NoteOff { key, .. } => (key.as_int(), false),
                _ => continue,
            };
            if ch == DRUM_CHANNEL {
                continue;
            }
            let slot = &mut open[ch as usize * 128 + key as usize];
            if on {
                let replaced = (from_tick..to_tick).contains(&t);
                gone[i] = replaced;
                slot.push_back((i, replaced));
                let entry = match counts.iter().position(|(k, _, _)| *k == (ti, ch)) {
                    Some(k) => k,
                    None => {
                        counts.push(((ti, ch), 0, 0));
                        counts.len() - 1
                    }
                };
                counts[entry].1 += replaced as usize;
                counts[entry].2 += 1;
            } else if let Some((_, replaced)) = slot.pop_front() {
                gone[i] = replaced;
            }
        }
        tracks.push(events);
        removed.push(gone);
    }
    let (target, channel) = counts
        .iter()
        .max_by_key(|(_, replaced, all)| (*replaced, *all))
        .map_or((tracks.len().saturating_sub(1), 0), |(k, _, _)| *k);
    let channel = u4::new(channel);
    let new_events = note_events(notes, tpb);
    let message = |on: bool, pitch: u8, vel: u8| TrackEventKind::Midi {
        channel,
        message: note_message(on, pitch, vel),
    };
    let mut out_tracks = Vec::with_capacity(tracks.len());
    for (ti, (events, gone)) in tracks.iter().zip(&removed).enumerate() {
        let kept = events
            .iter()
            .zip(gone)
            .filter(|(_, &g)| !g)
            .map(|(e, _)| *e);
        let mut merged: Vec<(u64, TrackEventKind)> = Vec::new();
        if ti == target {
            let is_end =
                |k: &TrackEventKind| matches!(k, TrackEventKind::Meta(MetaMessage::EndOfTrack));
            let mut pending = new_events.iter().peekable();
            let mut end = None;
            for (t, kind) in kept {
                if is_end(&kind) {
                    end = Some(t);
                    continue;
                }
                // New events due before this one: offs at its tick, anything earlier.
                while let Some(&&(nt, on, p, v)) = pending.peek() {
                    if nt < t || (nt == t && !on) {
                        merged.push((nt, message(on, p, v)));
                        pending.next();
                    } else {
                        break;
                    }
                }
                merged.push((t, kind));
            }
            for &(nt, on, p, v) in pending {
                merged.push((nt, message(on, p, v)));
            }
            let last = merged.last().map_or(0, |e| e.0);
            merged.push((
                end.unwrap_or(0).max(last),
                TrackEventKind::Meta(MetaMessage::EndOfTrack),
            ));
        } else {
            merged.extend(kept);
        }
        let mut last = 0u64;
        out_tracks.push(
            merged
                .into_iter()
                .map(|(t, kind)| {
                    let delta = u28::new((t - last) as u32);
                    last = t;
                    TrackEvent { delta, kind }
                })
                .collect::<Vec<_>>(),
        );
    }
    let smf = Smf {
        header: smf.header,
        tracks: out_tracks,
    };
    let mut out = Vec::new();
    smf.write_std(&mut out)
        .expect("writing MIDI to memory cannot fail");
    Ok(out)
}

/// (tick, is_on, pitch, velocity) of every note-on and note-off of `notes` at `tpb` ticks per
/// beat, sorted; offs sort before ons at the same tick so a repeated pitch is released before
/// it sounds again. Same-pitch overlaps are cut as one channel would play them.
fn note_events(notes: &[Note], tpb: f64) -> Vec<(u64, bool, u8, u8)> {
    let mut events = Vec::with_capacity(notes.len() * 2);
    for n in &without_overlaps(notes) {
        let on = (n.start * tpb).round().max(0.0) as u64;
        let off = ((n.end() * tpb).round() as u64).max(on + 1);
        events.push((on, true, n.pitch.min(127), n.velocity.clamp(1, 127)));
        events.push((off, false, n.pitch.min(127), 0));
    }
    events.sort_by_key(|&(t, on, p, _)| (t, on, p));
    events
}

/// A note-on (or a note-off, release velocity 64).
fn note_message(on: bool, pitch: u8, vel: u8) -> MidiMessage {
    if on {
        MidiMessage::NoteOn {
            key: u7::new(pitch),
            vel: u7::new(vel),
        }
    } else {
        MidiMessage::NoteOff {
            key: u7::new(pitch),
            vel: u7::new(64),
        }
    }
}

// midly's TrackName borrows bytes for the file's lifetime; names are short and few.
fn leak_name(name: &str) -> &'static [u8] {
    Box::leak(name.as_bytes().to_vec().into_boxed_slice())
}

/// A time signature (numerator, log2 denominator) for a bar length in beats.
fn time_signature_for(beats_per_bar: f64) -> (u8, u8) {
    let quarters = beats_per_bar;
    if (quarters.fract()).abs() < 1e-9 {
        (quarters as u8, 2)
    } else {
        ((quarters * 2.0).round() as u8, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each track's events as (absolute tick, event), for comparing files event by event.
    fn timeline(bytes: &[u8]) -> Vec<Vec<(u64, String)>> {
        let smf = Smf::parse(bytes).unwrap();
        smf.tracks
            .iter()
            .map(|t| {
                let mut tick = 0;
                t.iter()
                    .map(|e| {
                        tick += e.delta.as_int() as u64;
                        (tick, format!("{:?}", e.kind))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn replacing_a_bars_notes_keeps_every_other_event_where_it_was() {
        let n = |start: f64, duration: f64, pitch: u8| Note {
            start,
            duration,
            pitch,
            velocity: 90,
        };
        // A bass part and a lead; bar 2 (beats 4..8) is replaced. The lead's held note from
        // bar 1 sounds into bar 2 and stays.
        let bass: Vec<Note> = (0..12)
            .map(|i| n(i as f64, 1.0, 36 + (i % 4) as u8))
            .collect();
        let lead = vec![n(0.0, 6.0, 72), n(4.5, 1.0, 74), n(8.0, 2.0, 76)];
        let bytes = midi_bytes(
            &[
                TrackToWrite {
                    name: "bass",
                    channel: 1,
                    notes: &bass,
                },
                TrackToWrite {
                    name: "lead",
                    channel: 0,
                    notes: &lead,
                },
            ],
            4.0,
            100.0,
        );
        let new = [n(0.5 + 4.0, 0.5, 50), n(5.0, 3.0, 52)];
        let out = replace_notes(&bytes, Path::new("x.mid"), 4.0, 8.0, &new).unwrap();
        let (a, b) = (timeline(&bytes), timeline(&out));
        let tpb = WRITE_TICKS_PER_BEAT as u64;
        // The lead track is untouched but for its note starting in bar 2.
        let outside = |t: &[(u64, String)], lo: u64, hi: u64| -> Vec<(u64, String)> {
            t.iter()
                .filter(|e| e.0 < lo || e.0 >= hi)
                .cloned()
                .collect()
        };
        assert_eq!(outside(&a[0], 0, 0), outside(&b[0], 0, 0));
        assert_eq!(
            outside(&a[2], 4 * tpb, 6 * tpb),
            outside(&b[2], 4 * tpb, 6 * tpb)
        );
        assert_eq!(b[2].len(), a[2].len() - 2);
        // The bass track (most of the replaced notes) holds the new ones on its channel.
        let song = parse_midi(&out, Path::new("x.mid")).unwrap();
        let bass_out = &song.parts[0].notes;
        let in_bar_2: Vec<(f64, u8)> = bass_out
            .iter()
            .filter(|n| (4.0..8.0).contains(&n.start))
            .map(|n| (n.start, n.pitch))
            .collect();
        assert_eq!(in_bar_2, vec![(4.5, 50), (5.0, 52)]);
        let kept = |v: &[Note]| -> Vec<Note> {
            v.iter()
                .filter(|n| !(4.0..8.0).contains(&n.start))
                .copied()
                .collect()
        };
        assert_eq!(kept(bass_out), kept(&bass));
        assert_eq!(song.parts[1].notes, vec![lead[0], lead[2]]);
        assert!(timeline(&out)[1].last().unwrap().1.contains("EndOfTrack"));
    }

    #[test]
    fn written_notes_read_back_identically() {
        let notes = vec![
            Note {
                start: 0.0,
                duration: 1.0,
                pitch: 60,
                velocity: 100,
            },
            Note {
                start: 0.0,
                duration: 2.0,
                pitch: 64,
                velocity: 90,
            },
            Note {
                start: 1.5,
                duration: 0.25,
                pitch: 60,
                velocity: 80,
            },
        ];
        let bytes = midi_bytes(
            &[TrackToWrite {
                name: "t",
                channel: 0,
                notes: &notes,
            }],
            3.0,
            90.0,
        );
        let song = parse_midi(&bytes, Path::new("mem.mid")).unwrap();
        assert_eq!(song.melodic.notes, Phrase::new(notes, 3.0).notes);
        assert_eq!(song.melodic.beats_per_bar, 3.0);
        assert_eq!(song.ticks_per_beat, 480);
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let err = parse_midi(b"not midi at all", Path::new("bad.mid")).unwrap_err();
        assert!(err.to_string().contains("bad.mid"), "{err}");
    }

    #[test]
    fn drums_are_kept_apart() {
        let drums = vec![Note {
            start: 0.0,
            duration: 0.5,
            pitch: 36,
            velocity: 100,
        }];
        let keys = vec![Note {
            start: 0.0,
            duration: 0.5,
            pitch: 60,
            velocity: 100,
        }];
        let bytes = midi_bytes(
            &[
                TrackToWrite {
                    name: "d",
                    channel: 9,
                    notes: &drums,
                },
                TrackToWrite {
                    name: "k",
                    channel: 0,
                    notes: &keys,
                },
            ],
            4.0,
            120.0,
        );
        let song = parse_midi(&bytes, Path::new("m.mid")).unwrap();
        assert_eq!(song.drums, drums);
        assert_eq!(song.melodic.notes, keys);
    }

    /// A file of `events` (delta, status, data…) in one track at `tpb` ticks per beat.
    fn one_track(tpb: u16, events: &[u8]) -> Vec<u8> {
        let mut b = b"MThd\0\0\0\x06\0\0\0\x01".to_vec();
        b.extend(tpb.to_be_bytes());
        b.extend(b"MTrk");
        b.extend((events.len() as u32 + 4).to_be_bytes());
        b.extend(events);
        b.extend([0x00, 0xFF, 0x2F, 0x00]);
        b
    }

    #[test]
    fn notes_far_apart_are_refused_quickly_with_the_reason() {
        // Two notes twenty maximal delta-times apart at 1 tick per beat.
        let mut ev = vec![0x00, 0x90, 60, 100, 0x01, 0x80, 60, 0];
        for _ in 0..20 {
            ev.extend([0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0x01, 0x00]); // a text meta event
        }
        ev.extend([0x00, 0x90, 62, 100, 0x01, 0x80, 62, 0]);
        let err = parse_midi(&one_track(1, &ev), Path::new("far.mid")).unwrap_err();
        assert!(matches!(err, MidiFileError::TooLong { .. }), "{err}");
        assert!(err.to_string().contains("far.mid"));
        // Within the length cap, a long silence is refused too.
        let mut ev = vec![0x00, 0x90, 60, 100, 0x01, 0x80, 60, 0];
        ev.extend([0x89, 0x00, 0x90, 62, 100, 0x01, 0x80, 62, 0]); // 1152 beats on
        let err = parse_midi(&one_track(1, &ev), Path::new("gap.mid")).unwrap_err();
        assert!(matches!(err, MidiFileError::LongSilence { .. }), "{err}");
    }

    #[test]
    fn many_stacked_notes_of_one_key_pair_in_linear_time() {
        let n = 300_000;
        let mut ev = Vec::with_capacity(n * 8);
        for _ in 0..n {
            ev.extend([0x00, 0x90, 60, 100]);
        }
        // The offs come one tick later, so every note has a length.
        ev.extend([0x01, 0x80, 60, 0]);
        for _ in 1..n {
            ev.extend([0x00, 0x80, 60, 0]);
        }
        let song = parse_midi(&one_track(96, &ev), Path::new("stack.mid")).unwrap();
        assert_eq!(song.melodic.notes.len(), n);
    }

    #[test]
    fn an_smpte_header_is_a_clear_error_in_every_build() {
        let mut b = one_track(96, &[0x00, 0x90, 60, 100, 0x10, 0x80, 60, 0]);
        b[12] = 0x80;
        b[13] = 0x00;
        let err = parse_midi(&b, Path::new("smpte.mid")).unwrap_err();
        assert!(matches!(err, MidiFileError::Timecode { .. }), "{err}");
    }
}
