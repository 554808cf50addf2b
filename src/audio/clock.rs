//! Host transport → the beat span of one block. Time is beats inside Continuo; this is the one
//! place that converts samples to beats, per block, from the host's tempo.

/// The transport facts Continuo uses; every field may be missing in some host.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TransportInfo {
    pub playing: bool,
    pub tempo: Option<f64>,
    pub pos_beats: Option<f64>,
    pub time_sig: Option<(i32, i32)>,
    pub bar_start_beats: Option<f64>,
}

/// One block's place in musical time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockTime {
    /// Beat at the block's first sample.
    pub start_beat: f64,
    pub beats_per_sample: f64,
    pub samples: usize,
    pub tempo: f64,
    pub beats_per_bar: f64,
    /// A beat on which a bar starts (bar lines are `bar_origin + k × beats_per_bar`).
    pub bar_origin: f64,
    /// The host jumped, looped, stopped or started: everything sounding must be released.
    pub discontinuity: bool,
    /// Beats follow the host's transport (false: free-running on our own clock).
    pub host_driven: bool,
}

impl BlockTime {
    pub fn end_beat(&self) -> f64 {
        self.start_beat + self.samples as f64 * self.beats_per_sample
    }

    /// The beats whose nearest sample lies in this block: `[start, end)` shifted back by half
    /// a sample, so that an event on a block boundary is emitted exactly once, on its sample.
    pub fn window(&self) -> (f64, f64) {
        let half = 0.5 * self.beats_per_sample;
        (self.start_beat - half, self.end_beat() - half)
    }

    /// Sample offset inside this block of a beat in `[start_beat, end_beat)`.
    pub fn offset_of(&self, beat: f64) -> u32 {
        let offset = ((beat - self.start_beat) / self.beats_per_sample).round();
        offset.clamp(0.0, self.samples.saturating_sub(1) as f64) as u32
    }

    /// Beat of a sample offset inside this block.
    pub fn beat_at(&self, offset: u32) -> f64 {
        self.start_beat + offset as f64 * self.beats_per_sample
    }

    /// The first grid line (every `grid` beats, aligned to bars) at or after `beat`.
    pub fn next_line(&self, beat: f64, grid: f64) -> f64 {
        let k = ((beat - self.bar_origin) / grid - 1e-9).ceil();
        self.bar_origin + k * grid
    }
}

pub const DEFAULT_TEMPO: f64 = 120.0;
/// Position differences below this are rounding, not a jump.
const JUMP_TOLERANCE_BEATS: f64 = 1e-3;

/// Follows the host transport, or free-runs at the last known tempo when there is none or it
/// is stopped, so that a musician can play with the transport stopped.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    expected_start: Option<f64>,
    free_beat: f64,
    tempo: f64,
    beats_per_bar: f64,
    bar_origin: f64,
    host_driven: bool,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self {
            expected_start: None,
            free_beat: 0.0,
            tempo: DEFAULT_TEMPO,
            beats_per_bar: 4.0,
            bar_origin: 0.0,
            host_driven: false,
        }
    }

    /// The span of the next block of `samples` at `sample_rate`.
    pub fn advance(&mut self, t: &TransportInfo, samples: usize, sample_rate: f64) -> BlockTime {
        if let Some(tempo) = t.tempo.filter(|t| t.is_finite() && *t > 1.0) {
            self.tempo = tempo;
        }
        if let Some((num, den)) = t.time_sig.filter(|&(n, d)| n > 0 && d > 0) {
            self.beats_per_bar = num as f64 * 4.0 / den as f64;
        }
        let beats_per_sample = self.tempo / 60.0 / sample_rate;
        let host_pos = t.pos_beats.filter(|p| t.playing && p.is_finite());
        let host_driven = host_pos.is_some();
        let start_beat = host_pos.unwrap_or(self.free_beat);
        let discontinuity = host_driven != self.host_driven
            || match (host_driven, self.expected_start) {
                (true, Some(e)) => (start_beat - e).abs() > JUMP_TOLERANCE_BEATS,
                _ => false,
            };
        if host_driven {
            self.bar_origin = t.bar_start_beats.filter(|b| b.is_finite()).unwrap_or(0.0);
        }
        self.host_driven = host_driven;
        let end = start_beat + samples as f64 * beats_per_sample;
        self.expected_start = Some(end);
        self.free_beat = end;
        BlockTime {
            start_beat,
            beats_per_sample,
            samples,
            tempo: self.tempo,
            beats_per_bar: self.beats_per_bar,
            bar_origin: self.bar_origin,
            discontinuity,
            host_driven,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playing(pos: f64, tempo: f64) -> TransportInfo {
        TransportInfo {
            playing: true,
            tempo: Some(tempo),
            pos_beats: Some(pos),
            time_sig: Some((4, 4)),
            bar_start_beats: Some((pos / 4.0).floor() * 4.0),
        }
    }

    #[test]
    fn contiguous_blocks_are_not_jumps_and_a_loop_back_is() {
        let mut c = Clock::new();
        let first = c.advance(&playing(0.0, 120.0), 512, 48_000.0);
        assert!(
            first.discontinuity,
            "starting the transport releases whatever sounded"
        );
        let b = first.end_beat();
        assert!(!c.advance(&playing(b, 120.0), 512, 48_000.0).discontinuity);
        assert!(c.advance(&playing(0.0, 120.0), 512, 48_000.0).discontinuity);
    }

    #[test]
    fn stopping_is_a_discontinuity_and_then_the_clock_free_runs() {
        let mut c = Clock::new();
        let a = c.advance(&playing(8.0, 90.0), 480, 48_000.0);
        let stopped = TransportInfo {
            playing: false,
            ..playing(0.0, 90.0)
        };
        let s = c.advance(&stopped, 480, 48_000.0);
        assert!(s.discontinuity && !s.host_driven);
        assert_eq!(s.start_beat, a.end_beat());
        let s2 = c.advance(&stopped, 480, 48_000.0);
        assert!(!s2.discontinuity);
        assert!((s2.start_beat - s.end_beat()).abs() < 1e-12);
    }

    #[test]
    fn without_transport_it_runs_at_120() {
        let mut c = Clock::new();
        let b = c.advance(&TransportInfo::default(), 24_000, 48_000.0);
        assert!((b.end_beat() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn offsets_and_grid_lines() {
        let mut c = Clock::new();
        let b = c.advance(&playing(7.5, 120.0), 48_000, 48_000.0);
        assert_eq!(b.offset_of(8.0), 12_000);
        assert_eq!(b.next_line(7.5, 4.0), 8.0);
        assert_eq!(b.next_line(8.0, 4.0), 8.0);
        assert_eq!(b.next_line(8.01, 1.0), 9.0);
    }
}
