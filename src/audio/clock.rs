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
    /// The host's loop range (start, end) in beats, when a loop is on.
    pub loop_range: Option<(f64, f64)>,
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
    /// Where time moved by at the block's start (a jump, a loop back, the host's drift): the
    /// new position minus the expected one.
    pub jump_beats: f64,
    /// The block crosses the host's loop end and the host did not split it: from this sample
    /// on, time continues from the loop start.
    pub wrap: Option<Wrap>,
    /// First sample of this span within the host's block (non-zero for a wrap's tail).
    pub first_offset: u32,
    /// Nothing may start in this span: time inside a loop too short to play.
    pub muted: bool,
}

/// The loop ends inside a block: once, or as many times as a loop shorter than the block's
/// remainder comes round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wrap {
    /// The sample where the loop start first begins.
    pub offset: u32,
    /// Beat of the loop end (where time leaves) and of the loop start (where it resumes).
    pub from_beat: f64,
    pub to_beat: f64,
    /// Where the first wrap falls, in samples from the block's start, before rounding, and
    /// the loop's length in samples: wrap `k` is at `round(first + k × period)`.
    first: f64,
    period: f64,
    /// Wraps inside this block (at least 1).
    pub count: u32,
    /// The loop is shorter than [`MIN_LOOP_BEATS`]: too short to play. Time after the first
    /// wrap is one muted span (nothing starts in it) instead of a span per pass.
    pub too_short: bool,
}

impl Wrap {
    /// Sample of wrap `k` (0-based).
    fn offset_k(&self, k: u32) -> u32 {
        (self.first + k as f64 * self.period).round().max(0.0) as u32
    }

    /// How many wraps fall at or before `offset`: at most [`Wrap::count`], except in a loop
    /// too short to play, where every pass counts (the capture moves back by each).
    pub fn wraps_at(&self, offset: u32) -> f64 {
        if offset < self.offset {
            return 0.0;
        }
        // Wrap k is at or before `offset` when first + k × period < offset + 0.5.
        let n = ((offset as f64 + 0.5 - self.first) / self.period)
            .ceil()
            .max(1.0);
        if self.too_short {
            return n;
        }
        // Exactly as the spans are cut, whatever the floating point says at a boundary.
        let mut n = (n as u32).min(self.count);
        while n < self.count && self.offset_k(n) <= offset {
            n += 1;
        }
        while n > 1 && self.offset_k(n - 1) > offset {
            n -= 1;
        }
        n as f64
    }
}

/// The spans of linear time in a block, in order: see [`BlockTime::spans`].
pub struct Spans {
    block: BlockTime,
    next: u32,
}

impl Iterator for Spans {
    type Item = BlockTime;

    fn next(&mut self) -> Option<BlockTime> {
        let bt = self.block;
        let k = self.next;
        let Some(w) = bt.wrap else {
            self.next += 1;
            return (k == 0).then_some(bt);
        };
        let passes = if w.too_short { 1 } else { w.count };
        if k > passes {
            return None;
        }
        self.next += 1;
        let start = if k == 0 { 0 } else { w.offset_k(k - 1) };
        let end = if k == passes {
            bt.samples as u32
        } else {
            w.offset_k(k)
        };
        Some(BlockTime {
            start_beat: bt.beat_at(bt.first_offset + start),
            samples: end.saturating_sub(start) as usize,
            first_offset: bt.first_offset + start,
            wrap: None,
            muted: bt.muted || (k > 0 && w.too_short),
            discontinuity: bt.discontinuity && k == 0,
            jump_beats: if k == 0 { bt.jump_beats } else { 0.0 },
            ..bt
        })
    }
}

impl BlockTime {
    /// Beat just after the block's last sample (after a wrap: in the loop).
    pub fn end_beat(&self) -> f64 {
        self.beat_at(self.first_offset + self.samples as u32)
    }

    /// The spans of linear time in this block: all of it, or the part up to the loop end and
    /// one from the loop start for each pass of the loop (a loop too short to play: one muted
    /// span after its first end). Only the first span carries the block's discontinuity.
    pub fn spans(&self) -> Spans {
        Spans {
            block: *self,
            next: 0,
        }
    }

    /// The span the block ends in (after a wrap: the last pass of the loop), without walking
    /// the passes before it.
    pub fn last_span(&self) -> BlockTime {
        let passes = self
            .wrap
            .map_or(0, |w| if w.too_short { 1 } else { w.count });
        let mut last = Spans {
            block: *self,
            next: passes,
        };
        last.next().unwrap_or(*self)
    }

    /// The beats whose nearest sample lies in this span: `[start, end)` shifted back by half
    /// a sample, so that an event on a block boundary is emitted exactly once, on its sample.
    pub fn window(&self) -> (f64, f64) {
        let half = 0.5 * self.beats_per_sample;
        (self.start_beat - half, self.end_beat() - half)
    }

    /// Sample offset inside the host's block of a beat of this span.
    pub fn offset_of(&self, beat: f64) -> u32 {
        let offset = ((beat - self.start_beat) / self.beats_per_sample).round();
        self.first_offset + offset.clamp(0.0, self.samples.saturating_sub(1) as f64) as u32
    }

    /// Beat of a sample offset inside the host's block.
    pub fn beat_at(&self, offset: u32) -> f64 {
        let offset = offset.saturating_sub(self.first_offset);
        match self.wrap {
            // Each pass moves back by the loop's length from where linear time would be: the
            // beats of a pass are within half a sample of the loop's, and the take, moved back
            // by the same lengths, stays in the order played.
            Some(w) if offset >= w.offset => {
                let linear = self.start_beat + offset as f64 * self.beats_per_sample;
                linear - w.wraps_at(offset) * (w.from_beat - w.to_beat)
            }
            _ => self.start_beat + offset as f64 * self.beats_per_sample,
        }
    }

    /// The first grid line (every `grid` beats, aligned to bars) at or after `beat`.
    pub fn next_line(&self, beat: f64, grid: f64) -> f64 {
        let k = ((beat - self.bar_origin) / grid - 1e-9).ceil();
        self.bar_origin + k * grid
    }
}

pub const DEFAULT_TEMPO: f64 = 120.0;
/// Host tempos outside this range are not believed (the last good one is kept).
pub const TEMPO_RANGE: (f64, f64) = (10.0, 999.0);
/// Position differences below this are rounding, not a jump.
const JUMP_TOLERANCE_BEATS: f64 = 1e-3;
/// A host position this close to where the last block ended is the same place, rounded
/// (Ardour rounds to 1/1920 beat): the expected, sample-exact position is kept, so notes
/// land on the grid. Between this and the jump tolerance the clock follows the host quietly.
const ROUNDING_BEATS: f64 = 3e-4;
/// Shorter host loops are too short to play: the phrase plays to the loop's first end and is
/// then silent until the host leaves the loop (a span per pass of a loop a few samples long
/// would flood the block with note-offs).
pub const MIN_LOOP_BEATS: f64 = 1.0 / 16.0;
/// Bar positions within this of each other are the same.
const BAR_TOLERANCE_BEATS: f64 = 1e-3;

/// Follows the host transport, or free-runs at the last known tempo when there is none or it
/// is stopped, so that a musician can play with the transport stopped.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    expected_start: Option<f64>,
    free_beat: f64,
    tempo: f64,
    beats_per_bar: f64,
    bar_origin: f64,
    /// The last bar start the host reported.
    last_host_bar: Option<f64>,
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
            last_host_bar: None,
            host_driven: false,
        }
    }

    /// The span of the next block of `samples` at `sample_rate`.
    pub fn advance(&mut self, t: &TransportInfo, samples: usize, sample_rate: f64) -> BlockTime {
        let (lo, hi) = TEMPO_RANGE;
        if let Some(tempo) = t.tempo.filter(|t| t.is_finite() && (lo..=hi).contains(t)) {
            self.tempo = tempo;
        }
        let meter = t
            .time_sig
            .filter(|&(n, d)| (1..=32).contains(&n) && [1, 2, 4, 8, 16, 32].contains(&d))
            .map(|(num, den)| num as f64 * 4.0 / den as f64);
        if let Some(bpb) = meter {
            self.beats_per_bar = bpb;
        }
        let sample_rate = if sample_rate.is_finite() && sample_rate >= 1000.0 {
            sample_rate
        } else {
            48_000.0
        };
        let beats_per_sample = self.tempo / 60.0 / sample_rate;
        let host_pos = t
            .pos_beats
            .filter(|p| t.playing && p.is_finite() && p.abs() < 1e9);
        let host_driven = host_pos.is_some();
        let mut start_beat = host_pos.unwrap_or(self.free_beat);
        let loop_range = t
            .loop_range
            .filter(|_| host_driven)
            .filter(|&(ls, le)| ls.is_finite() && le.is_finite() && le > ls && ls.abs() < 1e9);
        let half_sample = 0.5 * beats_per_sample;
        if let Some((ls, le)) = loop_range {
            // A block that starts on the loop end, within rounding, starts at the loop start:
            // the host is there, whatever its rounded position says.
            if (start_beat - le).abs() < half_sample {
                start_beat = ls + (start_beat - le);
            }
        }
        let drift = match (host_driven && self.host_driven, self.expected_start) {
            (true, Some(e)) => Some(start_beat - e),
            _ => None,
        };
        if let (Some(d), Some(e)) = (drift, self.expected_start) {
            if d.abs() <= ROUNDING_BEATS {
                start_beat = e;
            }
        }
        let discontinuity = host_driven != self.host_driven
            || drift.is_some_and(|d| d.abs() > JUMP_TOLERANCE_BEATS);
        // Any move, a jump or drift followed quietly: the take moves with it, so it stays in
        // the order played.
        let jump_beats = match self.expected_start {
            Some(e) if discontinuity || drift.is_some() => start_beat - e,
            _ => 0.0,
        };
        if host_driven {
            self.follow_bar(t.bar_start_beats, start_beat);
        }
        self.host_driven = host_driven;
        let wrap = loop_range
            .filter(|&(_, le)| start_beat < le)
            .and_then(|(ls, le)| Self::wraps(start_beat, ls, le, beats_per_sample, samples));
        let bt = BlockTime {
            start_beat,
            beats_per_sample,
            samples,
            tempo: self.tempo,
            beats_per_bar: self.beats_per_bar,
            bar_origin: self.bar_origin,
            discontinuity,
            host_driven,
            jump_beats,
            wrap,
            first_offset: 0,
            muted: false,
        };
        let end = bt.end_beat();
        self.expected_start = Some(end);
        self.free_beat = end;
        bt
    }

    /// Where the loop end falls inside a block from `start` (before it) of `samples`. The first
    /// end must fall on a sample inside the block (offset 1..samples-1, or 0 in a loop too
    /// short to play). One that rounds to the block's end is the next block's start: the host
    /// jumps there (positions summed block by block land a hair past a loop end that is
    /// exactly on a block boundary, and wrapping on the last sample would put every later
    /// pass one sample early, as Ardour showed). A loop shorter than what is left of the block
    /// comes round again: every pass is its own span, as the host plays it.
    fn wraps(start: f64, ls: f64, le: f64, bps: f64, samples: usize) -> Option<Wrap> {
        let first = (le - start) / bps;
        let period = (le - ls) / bps;
        let too_short = le - ls < MIN_LOOP_BEATS;
        let offset = first.round();
        let lowest = if too_short { 0.0 } else { 1.0 };
        if !(offset >= lowest && offset < samples as f64) {
            return None;
        }
        // Wrap k falls inside the block while first + k × period < samples − 0.5.
        let count = if too_short {
            1
        } else {
            ((samples as f64 - 0.5 - first) / period).ceil().max(1.0) as u32
        };
        let mut w = Wrap {
            offset: offset as u32,
            from_beat: le,
            to_beat: ls,
            first,
            period,
            count,
            too_short,
        };
        while w.count > 1 && w.offset_k(w.count - 1) >= samples as u32 {
            w.count -= 1;
        }
        while !too_short && w.offset_k(w.count) < samples as u32 {
            w.count += 1;
        }
        Some(w)
    }

    /// Takes the host's bar start if it agrees with the position and the meter: the position
    /// lies inside the bar it names, and the bar is a whole number of bars from the origin
    /// believed so far (beat 0 at first), or the host's bar starts have just advanced by
    /// exactly one bar of this meter (a meter change in a host that counts bars right). Some
    /// hosts (Ardour 7.3) report bar starts as bar number × 4 quarters whatever the meter;
    /// those never agree, and the origin the meter gives stays.
    fn follow_bar(&mut self, host_bar: Option<f64>, pos: f64) {
        let bpb = self.beats_per_bar;
        let Some(bar) = host_bar.filter(|b| b.is_finite() && b.abs() < 1e9) else {
            return;
        };
        let inside = pos - bar >= -BAR_TOLERANCE_BEATS && pos - bar < bpb + BAR_TOLERANCE_BEATS;
        let bars_from_origin = (bar - self.bar_origin) / bpb;
        let whole = (bars_from_origin - bars_from_origin.round()).abs() * bpb < BAR_TOLERANCE_BEATS;
        let one_bar_on = self
            .last_host_bar
            .is_some_and(|last| (bar - last - bpb).abs() < BAR_TOLERANCE_BEATS);
        if self
            .last_host_bar
            .is_none_or(|last| (bar - last).abs() >= BAR_TOLERANCE_BEATS)
        {
            self.last_host_bar = Some(bar);
        }
        if inside && (whole || one_bar_on) {
            self.bar_origin = bar;
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
            loop_range: None,
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

    #[test]
    fn a_bar_start_that_ignores_a_three_four_meter_is_not_believed() {
        // Ardour 7.3 in 3/4: bar n is reported to start at 4 × (n − 1) quarters.
        let mut c = Clock::new();
        for pos in [4.5, 5.0, 6.5, 9.5] {
            let t = TransportInfo {
                playing: true,
                tempo: Some(90.0),
                pos_beats: Some(pos),
                time_sig: Some((3, 4)),
                bar_start_beats: Some(4.0 * (pos / 3.0).floor()),
                loop_range: None,
            };
            let b = c.advance(&t, 64, 48_000.0);
            assert_eq!(
                b.bar_origin.rem_euclid(3.0),
                0.0,
                "at {pos}: {}",
                b.bar_origin
            );
            assert_eq!(b.next_line(pos, 3.0), 3.0 * (pos / 3.0).ceil());
        }
    }

    #[test]
    fn a_meter_change_counted_right_by_the_host_is_followed() {
        // 4/4 for two bars, then 3/4 from beat 8: bars at 8, 11, 14.
        let mut c = Clock::new();
        let mut origin = 0.0;
        for (pos, bar) in [(8.5, 8.0), (11.5, 11.0), (14.5, 14.0)] {
            let t = TransportInfo {
                playing: true,
                tempo: Some(120.0),
                pos_beats: Some(pos),
                time_sig: Some((3, 4)),
                bar_start_beats: Some(bar),
                loop_range: None,
            };
            origin = c.advance(&t, 64, 48_000.0).bar_origin;
        }
        assert_eq!(origin, 14.0);
    }

    #[test]
    fn positions_rounded_by_the_host_keep_the_sample_exact_grid() {
        let mut c = Clock::new();
        let sr = 48_000.0;
        let mut sample = 0u64;
        for _ in 0..200 {
            let exact = sample as f64 * 2.0 / sr;
            let rounded = (exact * 1920.0).round() / 1920.0;
            let b = c.advance(&playing(rounded, 120.0), 512, sr);
            if sample > 0 {
                assert!(!b.discontinuity);
                assert!(
                    (b.start_beat - exact).abs() < 1e-9,
                    "{} vs {exact}",
                    b.start_beat
                );
            }
            sample += 512;
        }
    }

    #[test]
    fn impossible_tempos_and_sample_rates_are_not_believed() {
        let mut c = Clock::new();
        c.advance(&playing(0.0, 100.0), 64, 48_000.0);
        let b = c.advance(&playing(1.0, 1e7), 64, 48_000.0);
        assert_eq!(b.tempo, 100.0);
        let b = c.advance(&playing(1.0, f64::NAN), 64, 0.0);
        assert!(b.beats_per_sample.is_finite() && b.beats_per_sample > 0.0);
    }

    #[test]
    fn a_block_across_the_loop_end_wraps_and_the_next_one_is_no_jump() {
        let mut c = Clock::new();
        let sr = 48_000.0;
        let looped = |pos: f64| TransportInfo {
            loop_range: Some((0.0, 4.0)),
            ..playing(pos, 120.0)
        };
        // 512 samples = 0.021333 beats; start 100 samples before the loop end.
        let start = 4.0 - 100.0 * 2.0 / sr;
        c.advance(&looped(start - 512.0 * 2.0 / sr), 512, sr);
        let b = c.advance(&looped(start), 512, sr);
        let w = b.wrap.expect("the block crosses the loop end");
        assert_eq!(w.offset, 100);
        assert_eq!(b.beat_at(100), 0.0);
        assert!((b.end_beat() - 412.0 * 2.0 / sr).abs() < 1e-12);
        let spans: Vec<BlockTime> = b.spans().collect();
        assert_eq!((spans[0].samples, spans[1].samples), (100, 412));
        assert_eq!(spans[1].offset_of(0.0), 100);
        // Ardour shows the jump in the next block: where the wrap already put us.
        let next = c.advance(&looped(b.end_beat()), 512, sr);
        assert!(!next.discontinuity && next.wrap.is_none());
    }

    #[test]
    fn a_loop_shorter_than_the_block_is_a_span_per_pass() {
        // A quarter-beat loop from beat 0.2, 8,192 samples at 48 kHz and 120 BPM: the loop
        // start comes at samples 1,200 and 7,200.
        let mut c = Clock::new();
        let t = TransportInfo {
            loop_range: Some((0.0, 0.25)),
            ..playing(0.2, 120.0)
        };
        let b = c.advance(&t, 8192, 48_000.0);
        let spans: Vec<(u32, usize, f64)> = b
            .spans()
            .map(|s| (s.first_offset, s.samples, s.start_beat))
            .collect();
        let want = [(0, 1200, 0.2), (1200, 6000, 0.0), (7200, 992, 0.0)];
        assert_eq!(spans.len(), want.len(), "{spans:?}");
        for (got, want) in spans.iter().zip(want) {
            assert_eq!((got.0, got.1), (want.0, want.1), "{spans:?}");
            assert!((got.2 - want.2).abs() < 1e-12, "{spans:?}");
        }
        assert_eq!(b.last_span(), b.spans().last().unwrap());
        assert!((b.end_beat() - 992.0 * 2.0 / 48_000.0).abs() < 1e-12);
        assert!((b.beat_at(7680) - 480.0 * 2.0 / 48_000.0).abs() < 1e-12);
    }

    #[test]
    fn a_loop_too_short_to_play_is_one_muted_span_after_its_end() {
        let mut c = Clock::new();
        let t = TransportInfo {
            loop_range: Some((0.0, 0.03)),
            ..playing(0.0, 120.0)
        };
        let b = c.advance(&t, 8192, 48_000.0);
        let spans: Vec<(u32, bool)> = b.spans().map(|s| (s.first_offset, s.muted)).collect();
        assert_eq!(spans, vec![(0, false), (720, true)]);
        // Still inside the loop at the block's end: 8,192 = 11 passes of 720 and 272.
        assert!((b.end_beat() - 272.0 * 2.0 / 48_000.0).abs() < 1e-9);
    }

    #[test]
    fn a_loop_end_on_a_block_boundary_is_the_next_blocks_jump_not_a_wrap() {
        // 4-bar loop at 120 BPM, 48 kHz, 1024-sample blocks: the loop end (384,000 samples)
        // is the start of block 375. The first position is a hair late (a host's rounding), so
        // the positions summed over 375 blocks end a hair past the loop end. The host jumps to
        // the loop start there; the grid stays sample-exact.
        let mut c = Clock::new();
        let sr = 48_000.0;
        let bps = 2.0 / sr;
        let looped = |pos: f64| TransportInfo {
            loop_range: Some((0.0, 16.0)),
            ..playing(pos, 120.0)
        };
        let mut pos = 0.0;
        let mut last = None;
        for block in 0..375 {
            let b = c.advance(&looped(block as f64 * 1024.0 * bps + 1e-10), 1024, sr);
            assert!(b.wrap.is_none(), "block {block} wrapped");
            pos = b.end_beat();
            last = Some(b);
        }
        assert!((pos - 16.0).abs() < 1e-9);
        assert_eq!(last.unwrap().offset_of(16.0 - bps), 1023);
        let next = c.advance(&looped(0.0), 1024, sr);
        assert!(next.discontinuity);
        assert_eq!(next.start_beat, 0.0);
        // A note on beat 8 of the next pass lands on its exact sample: 192,000 = block 187,
        // offset 512 (what Ardour showed one sample early on every pass after the first).
        let mut b = next;
        for _ in 0..187 {
            b = c.advance(&looped(b.end_beat()), 1024, sr);
        }
        assert_eq!(b.offset_of(8.0), 512);
    }
}
