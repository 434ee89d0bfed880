//! The taps a real call attaches to its media: recording the caller (with
//! silence detection), recording the whole call (both directions mixed),
//! and listening for a fax machine's calling tone (CNG, 1100 Hz).
//!
//! Recordings are 8 kHz 16-bit mono WAV files written next to the media
//! documents they become (`<account>/media/.<id>.wav.part`, renamed to
//! `<id>.wav` when the recording ends; the call writes `<id>.json` when it
//! ends).

// Signal processing: sample counts and levels move between integers and
// floats on purpose (bounded values; rounding is the point).
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use super::backend::Context;
use crate::engine::control::RecordRequest;
use crate::media::audio::tone_share;
use crate::media::g711::RATE;
use crate::media::session::{MediaEvent, Tap};

/// A frame quieter than this (RMS, of 32767) is silence: about -44 dBFS,
/// Kazoo's default silence threshold of 200.
pub const SILENCE_RMS: f64 = 200.0;

/// Where a recording's file goes, and its temporary name while recording.
pub fn paths(context: &Context, id: &str) -> (PathBuf, PathBuf) {
    let dir = context
        .library
        .flows()
        .join(context.account.account.id.as_str())
        .join(crate::store::MEDIA);
    (
        dir.join(format!("{id}.wav")),
        dir.join(format!(".{id}.wav.part")),
    )
}

fn writer(part: &PathBuf) -> Option<hound::WavWriter<BufWriter<File>>> {
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir).ok()?;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(part, spec).ok()
}

/// Finishes a recording: the WAV header is completed, the file flushed and
/// renamed to its final name.
fn finalize(
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    part: &PathBuf,
    path: &PathBuf,
) -> bool {
    let Some(writer) = writer else { return false };
    if writer.finalize().is_err() {
        let _ = std::fs::remove_file(part);
        return false;
    }
    if let Ok(file) = File::open(part) {
        let _ = file.sync_all();
    }
    std::fs::rename(part, path).is_ok()
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Records the caller's audio; reports `silence` once the caller has been
/// silent for the request's `silence_ms`.
struct CallerRecorder {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    part: PathBuf,
    path: PathBuf,
    samples: u64,
    silence_ms: Option<u64>,
    silent_ms: u64,
    reported: bool,
    tap_id: u64,
}

impl Tap for CallerRecorder {
    fn inbound(&mut self, samples: &[i16]) -> Option<MediaEvent> {
        if let Some(writer) = &mut self.writer {
            for &s in samples {
                if writer.write_sample(s).is_err() {
                    break;
                }
            }
        }
        self.samples += samples.len() as u64;
        let ms = samples.len() as u64 * 1000 / u64::from(RATE);
        if rms(samples) < SILENCE_RMS {
            self.silent_ms += ms;
        } else {
            self.silent_ms = 0;
        }
        match self.silence_ms {
            Some(limit) if !self.reported && self.silent_ms >= limit => {
                self.reported = true;
                Some(MediaEvent::Tap {
                    id: self.tap_id,
                    what: "silence".to_owned(),
                    ms: self.samples * 1000 / u64::from(RATE),
                    detail: String::new(),
                })
            }
            _ => None,
        }
    }

    fn finish(self: Box<Self>) -> Option<MediaEvent> {
        let this = *self;
        let ok = finalize(this.writer, &this.part, &this.path);
        Some(MediaEvent::Tap {
            id: this.tap_id,
            what: if ok { "recorded" } else { "failed" }.to_owned(),
            ms: this.samples * 1000 / u64::from(RATE),
            detail: this.path.display().to_string(),
        })
    }
}

/// A tap recording the caller for `record`; returns it and its file.
pub fn caller(
    context: &Context,
    id: &str,
    request: &RecordRequest,
    tap_id: u64,
) -> (Box<dyn Tap>, PathBuf) {
    let (path, part) = paths(context, id);
    let tap = CallerRecorder {
        writer: writer(&part),
        part,
        path: path.clone(),
        samples: 0,
        silence_ms: request.silence_ms,
        silent_ms: 0,
        reported: false,
        tap_id,
    };
    (Box::new(tap), path)
}

/// Frames one side may run ahead of the other before it is written alone.
const MIX_SLACK: usize = 10;

/// Records both directions mixed.
struct CallRecorder {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    part: PathBuf,
    path: PathBuf,
    inbound: VecDeque<Vec<i16>>,
    outbound: VecDeque<Vec<i16>>,
    samples: u64,
    /// The recording's time limit, in samples: nothing is written past it.
    max_samples: Option<u64>,
    tap_id: u64,
}

impl CallRecorder {
    fn write(&mut self, a: Option<&[i16]>, b: Option<&[i16]>) {
        let mut len = a.map_or(0, <[i16]>::len).max(b.map_or(0, <[i16]>::len));
        if let Some(max) = self.max_samples {
            let room = usize::try_from(max.saturating_sub(self.samples)).unwrap_or(usize::MAX);
            len = len.min(room);
        }
        self.samples += len as u64;
        let Some(writer) = &mut self.writer else {
            return;
        };
        for i in 0..len {
            let x = a.and_then(|v| v.get(i)).copied().unwrap_or(0);
            let y = b.and_then(|v| v.get(i)).copied().unwrap_or(0);
            let mixed =
                (i32::from(x) + i32::from(y)).clamp(i32::from(i16::MIN), i32::from(i16::MAX));
            if writer.write_sample(mixed as i16).is_err() {
                return;
            }
        }
    }

    fn drain(&mut self) {
        while !self.inbound.is_empty() && !self.outbound.is_empty() {
            let (a, b) = (self.inbound.pop_front(), self.outbound.pop_front());
            self.write(a.as_deref(), b.as_deref());
        }
        while self.inbound.len() > MIX_SLACK {
            let a = self.inbound.pop_front();
            self.write(a.as_deref(), None);
        }
        while self.outbound.len() > MIX_SLACK {
            let b = self.outbound.pop_front();
            self.write(None, b.as_deref());
        }
    }
}

impl Tap for CallRecorder {
    fn inbound(&mut self, samples: &[i16]) -> Option<MediaEvent> {
        self.inbound.push_back(samples.to_vec());
        self.drain();
        None
    }

    fn outbound(&mut self, samples: &[i16]) {
        self.outbound.push_back(samples.to_vec());
        self.drain();
    }

    fn finish(self: Box<Self>) -> Option<MediaEvent> {
        let mut this = *self;
        while !this.inbound.is_empty() || !this.outbound.is_empty() {
            let (a, b) = (this.inbound.pop_front(), this.outbound.pop_front());
            this.write(a.as_deref(), b.as_deref());
        }
        let ok = finalize(this.writer, &this.part, &this.path);
        Some(MediaEvent::Tap {
            id: this.tap_id,
            what: if ok { "recorded" } else { "failed" }.to_owned(),
            ms: this.samples * 1000 / u64::from(RATE),
            detail: this.path.display().to_string(),
        })
    }
}

/// A tap recording the whole call (`record_call`).
/// With `time_limit_ms`, the file ends there.
pub fn whole_call(
    context: &Context,
    id: &str,
    tap_id: u64,
    time_limit_ms: Option<u64>,
) -> (Box<dyn Tap>, PathBuf) {
    let (path, part) = paths(context, id);
    let tap = CallRecorder {
        writer: writer(&part),
        part,
        path: path.clone(),
        inbound: VecDeque::new(),
        outbound: VecDeque::new(),
        samples: 0,
        max_samples: time_limit_ms.map(|ms| ms.saturating_mul(u64::from(RATE)) / 1000),
        tap_id,
    };
    (Box::new(tap), path)
}

/// Listens for CNG: 1100 Hz in bursts of half a second.
struct FaxDetector {
    heard_ms: u64,
    reported: bool,
    tap_id: u64,
}

/// Milliseconds of 1100 Hz that make a fax.
const CNG_MS: u64 = 400;

impl Tap for FaxDetector {
    fn inbound(&mut self, samples: &[i16]) -> Option<MediaEvent> {
        let ms = samples.len() as u64 * 1000 / u64::from(RATE);
        if rms(samples) > SILENCE_RMS && tone_share(samples, 1100.0) > 0.6 {
            self.heard_ms += ms;
        }
        if self.heard_ms >= CNG_MS && !self.reported {
            self.reported = true;
            return Some(MediaEvent::Tap {
                id: self.tap_id,
                what: "fax".to_owned(),
                ms: self.heard_ms,
                detail: String::new(),
            });
        }
        None
    }

    fn finish(self: Box<Self>) -> Option<MediaEvent> {
        None
    }
}

/// A tap that reports `fax` when it hears a fax machine's calling tone.
pub fn fax_detector(tap_id: u64) -> Box<dyn Tap> {
    Box::new(FaxDetector {
        heard_ms: 0,
        reported: false,
        tap_id,
    })
}

/// Frames of `ms` of a sine at `frequency` (for tests).
#[cfg(test)]
fn sine_frames(frequency: f64, ms: u64, amplitude: f64) -> Vec<Vec<i16>> {
    let total = (ms * u64::from(RATE) / 1000) as usize;
    let samples: Vec<i16> = (0..total)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            (amplitude * (2.0 * std::f64::consts::PI * frequency * t).sin()) as i16
        })
        .collect();
    samples
        .chunks(crate::media::g711::FRAME)
        .map(<[i16]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hears_cng_and_not_speech_tones() {
        let mut detector = fax_detector(1);
        let mut events = Vec::new();
        for frame in sine_frames(1100.0, 500, 8000.0) {
            events.extend(detector.inbound(&frame));
        }
        assert_eq!(events.len(), 1);
        let mut other = fax_detector(2);
        for frame in sine_frames(440.0, 2000, 8000.0) {
            assert!(other.inbound(&frame).is_none());
        }
    }

    #[test]
    fn silence_share_and_rms() {
        assert!(rms(&[0; 160]) < SILENCE_RMS);
        let loud = &sine_frames(1000.0, 20, 8000.0)[0];
        assert!(rms(loud) > 5000.0);
        assert!(tone_share(loud, 1000.0) > 0.9);
        assert!(tone_share(loud, 1100.0) < 0.3);
    }
}
