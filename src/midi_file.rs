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
use std::path::{Path, PathBuf};

/// The General MIDI percussion channel (10, zero-based 9).
const DRUM_CHANNEL: u8 = 9;
/// Ticks per beat in the files Continuo writes; divisible by 3 and 16.
const WRITE_TICKS_PER_BEAT: u16 = 480;

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
        // Open notes of this track: (channel, key) -> stack of (start tick, velocity).
        let mut open: Vec<Vec<(u64, u8)>> = vec![Vec::new(); 16 * 128];
        let mut tick: u64 = 0;
        for event in track {
            tick += event.delta.as_int() as u64;
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
                        slot.push((tick, on_vel));
                    } else if !slot.is_empty() {
                        // First in, first out: a repeated key releases its oldest note.
                        let (start, velocity) = slot.remove(0);
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
        // (tick, is_on, pitch, velocity); offs sort before ons at the same tick so a
        // repeated pitch is released before it sounds again.
        let mut events: Vec<(u64, bool, u8, u8)> = Vec::with_capacity(track.notes.len() * 2);
        for n in &without_overlaps(track.notes) {
            let on = (n.start * tpb).round().max(0.0) as u64;
            let off = ((n.end() * tpb).round() as u64).max(on + 1);
            events.push((on, true, n.pitch.min(127), n.velocity.clamp(1, 127)));
            events.push((off, false, n.pitch.min(127), 0));
        }
        events.sort_by_key(|&(t, on, p, _)| (t, on, p));
        let channel = u4::new(track.channel.min(15));
        let mut out = vec![TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TrackName(leak_name(track.name))),
        }];
        let mut last = 0u64;
        for (t, on, pitch, vel) in events {
            let message = if on {
                MidiMessage::NoteOn {
                    key: u7::new(pitch),
                    vel: u7::new(vel),
                }
            } else {
                MidiMessage::NoteOff {
                    key: u7::new(pitch),
                    vel: u7::new(64),
                }
            };
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
}
