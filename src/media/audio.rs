//! Audio the media layer plays: clips of 8 kHz mono samples, read from any
//! PCM WAV (resampled), or made from Kazoo's `tone_stream://` syntax.

// Signal processing: sample counts and levels move between integers and
// floats on purpose (bounded values; rounding is the point).
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::f32::consts::TAU;
use std::path::Path;
use std::sync::Arc;

use rubato::audioadapter_buffers::owned::InterleavedOwned;
use rubato::{Fft, FixedSync, Resampler};

use super::g711::RATE;

/// How many times a clip plays when started once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Times(u32),
    /// Until stopped (a ringback tone with `loops=-1`).
    Forever,
}

/// Audio ready to play: 8 kHz mono samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    pub samples: Arc<[i16]>,
    pub repeat: Repeat,
}

/// The longest clip accepted, in samples (30 minutes).
pub const MAX_SAMPLES: usize = 30 * 60 * RATE as usize;

/// A clip that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: {message}")]
    Wav { path: String, message: String },
    #[error("bad tone_stream {spec:?}: {message}")]
    Tone { spec: String, message: String },
}

impl Clip {
    pub fn once(samples: Vec<i16>) -> Self {
        Self {
            samples: samples.into(),
            repeat: Repeat::Times(1),
        }
    }

    /// `ms` of silence.
    pub fn silence(ms: u32) -> Self {
        Self::once(vec![0; ms_to_samples(ms)])
    }

    /// How long one play lasts, in ms (`None`: forever).
    pub fn duration_ms(&self) -> Option<u64> {
        match self.repeat {
            Repeat::Times(n) => {
                Some(self.samples.len() as u64 * u64::from(n) * 1000 / u64::from(RATE))
            }
            Repeat::Forever => None,
        }
    }

    /// Reads a PCM WAV file (8 to 32-bit integers or 32-bit floats, any
    /// rate, any channels: mixed down to mono and resampled to 8 kHz).
    pub fn from_wav(path: &Path) -> Result<Self, AudioError> {
        let error = |message: String| AudioError::Wav {
            path: path.display().to_string(),
            message,
        };
        let mut reader = hound::WavReader::open(path).map_err(|e| error(e.to_string()))?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let frames = reader.duration() as usize;
        let limit = MAX_SAMPLES.saturating_mul(spec.sample_rate as usize / RATE as usize + 1);
        if frames > limit {
            return Err(error(format!(
                "{} s of audio is longer than the 30 minutes a clip may last",
                frames / spec.sample_rate.max(1) as usize
            )));
        }
        let interleaved = wav_samples(&mut reader).map_err(|e| error(e.to_string()))?;
        let mono: Vec<f32> = interleaved
            .chunks(channels)
            .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
            .collect();
        let at_8k = resample(&mono, spec.sample_rate).map_err(error)?;
        Ok(Self::once(at_8k.iter().map(|&s| to_i16(s)).collect()))
    }

    /// A clip from `FreeSWITCH`'s tone syntax, as Kazoo writes it:
    /// `tone_stream://[L=n;][v=dB;]%(on_ms,off_ms,freq[,freq...])[;...][;loops=n]`
    /// (`-1` loops: until stopped).
    pub fn tone_stream(spec: &str) -> Result<Self, AudioError> {
        let body = spec.strip_prefix("tone_stream://").unwrap_or(spec);
        let error = |message: &str| AudioError::Tone {
            spec: spec.to_owned(),
            message: message.to_owned(),
        };
        let mut samples: Vec<i16> = Vec::new();
        let mut repeat = Repeat::Times(1);
        let mut gain = 0.5_f32;
        for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(n) = part
                .strip_prefix("L=")
                .or_else(|| part.strip_prefix("loops="))
            {
                let n: i64 = n
                    .trim()
                    .parse()
                    .map_err(|_| error("loops must be a number"))?;
                repeat = match u32::try_from(n) {
                    Ok(0) => return Err(error("loops must not be 0")),
                    Ok(n) => Repeat::Times(n.min(1000)),
                    Err(_) => Repeat::Forever,
                };
            } else if let Some(db) = part.strip_prefix("v=") {
                let db: f32 = db.trim().parse().map_err(|_| error("v= must be in dB"))?;
                gain = 10_f32.powf(db.clamp(-60.0, 0.0) / 20.0);
            } else if let Some(inner) = part.strip_prefix("%(").and_then(|p| p.strip_suffix(')')) {
                let numbers: Vec<f32> = inner
                    .split(',')
                    .map(|n| n.trim().parse::<f32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| error("%(...) holds numbers: on_ms,off_ms,freq[,freq...]"))?;
                let [on, off, freqs @ ..] = numbers.as_slice() else {
                    return Err(error("%(...) needs on_ms and off_ms"));
                };
                if !(0.0..=60_000.0).contains(on) || !(0.0..=60_000.0).contains(off) {
                    return Err(error("durations must be between 0 and 60000 ms"));
                }
                samples.extend(tone(*on as u32, freqs, gain));
                samples.extend(std::iter::repeat_n(0, ms_to_samples(*off as u32)));
                if samples.len() > MAX_SAMPLES {
                    return Err(error("longer than 30 minutes"));
                }
            } else {
                return Err(error(&format!("unknown part {part:?}")));
            }
        }
        if samples.is_empty() {
            return Err(error("no %(on,off,freq) segment"));
        }
        Ok(Self {
            samples: samples.into(),
            repeat,
        })
    }

    /// The beep before a recording: 250 ms of 1 kHz.
    pub fn beep() -> Self {
        Self::once(tone(250, &[1000.0], 0.5))
    }
}

fn ms_to_samples(ms: u32) -> usize {
    (u64::from(ms) * u64::from(RATE) / 1000) as usize
}

pub(crate) fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16
}

/// `ms` of the sum of `freqs` (each at `gain / freqs.len()`).
fn tone(ms: u32, freqs: &[f32], gain: f32) -> Vec<i16> {
    let n = ms_to_samples(ms);
    let audible: Vec<f32> = freqs
        .iter()
        .copied()
        .filter(|f| *f > 0.0 && *f < 4000.0)
        .collect();
    if audible.is_empty() {
        return vec![0; n];
    }
    let each = gain / audible.len() as f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            to_i16(audible.iter().map(|f| (TAU * f * t).sin() * each).sum())
        })
        .collect()
}

/// Resamples mono audio at `rate` to 8 kHz.
pub(crate) fn resample(mono: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == RATE || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    if !resamplable(rate) {
        return Err(format!(
            "a sample rate of {rate} Hz is not one we convert: rates from 1 to 384 kHz that \
             share a large factor with 8 kHz (8000, 11025, 16000, 22050, 32000, 44100, 48000, ...)"
        ));
    }
    let mut resampler = Fft::<f32>::new(rate as usize, RATE as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| e.to_string())?;
    let input =
        InterleavedOwned::new_from(mono.to_vec(), 1, mono.len()).map_err(|e| e.to_string())?;
    let output = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| e.to_string())?;
    Ok(output.take_data())
}

/// Whether audio at `rate` Hz is converted to 8 kHz. The resampler's
/// filter (and its work) grows with `rate / gcd(rate, 8000)`: a header
/// claiming an odd rate (a prime near 2^32, say) would ask for gigabytes,
/// so only rates whose ratio stays small are taken: every common one is at
/// most 441 (44.1 kHz and its family).
pub(crate) fn resamplable(rate: u32) -> bool {
    const MAX_RATIO: u32 = 2000;
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    (1000..=384_000).contains(&rate) && rate / gcd(rate, RATE) <= MAX_RATIO
}

/// A WAV reader's samples, interleaved, as floats at full scale 1.0 (8 to
/// 32-bit integers, or 32-bit floats): what playing a file and converting
/// an upload both read.
pub(crate) fn wav_samples<R: std::io::Read>(
    reader: &mut hound::WavReader<R>,
) -> Result<Vec<f32>, hound::Error> {
    let spec = reader.spec();
    match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            // Full scale is 2^(bits-1) whatever the width.
            let scale = 1.0 / (1_i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect()
        }
    }
}

/// Our own music on hold when no music is installed: a slow arpeggio
/// (C major, A minor, F major, G major; 300 ms notes, soft, with a short
/// fade on each note so that nothing clicks), 9.6 s long.
pub fn hold_tune() -> Vec<i16> {
    const CHORDS: [[f64; 4]; 4] = [
        [261.63, 329.63, 392.00, 523.25],
        [220.00, 261.63, 329.63, 440.00],
        [174.61, 220.00, 261.63, 349.23],
        [196.00, 246.94, 293.66, 392.00],
    ];
    let note = RATE as usize * 300 / 1000;
    let fade = RATE as usize * 20 / 1000;
    let mut samples = Vec::with_capacity(note * 32);
    for chord in CHORDS {
        for _ in 0..2 {
            for frequency in chord {
                for i in 0..note {
                    let envelope = (i.min(note - i) as f64 / fade as f64).min(1.0);
                    let t = i as f64 / f64::from(RATE);
                    let value = 6000.0 * envelope * (std::f64::consts::TAU * frequency * t).sin();
                    samples.push(value as i16);
                }
            }
        }
    }
    samples
}

/// The power of one frequency in a frame, relative to the frame's power
/// (Goertzel's algorithm: a single DFT bin, a few lines of arithmetic).
pub fn tone_share(samples: &[i16], frequency: f64) -> f64 {
    let n = samples.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let k = (n * frequency / f64::from(super::g711::RATE)).round();
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * k / n).cos();
    let (mut s1, mut s2) = (0.0_f64, 0.0_f64);
    let mut energy = 0.0_f64;
    for &sample in samples {
        let x = f64::from(sample);
        energy += x * x;
        let s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy < 1.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    // A pure tone in the bin gives power = energy * n / 2.
    power / (energy * n / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero crossings per second / 2: the frequency of a pure tone.
    fn frequency(samples: &[i16]) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        crossings as f32 / 2.0 / (samples.len() as f32 / RATE as f32)
    }

    #[test]
    fn tone_streams() {
        let clip = Clip::tone_stream("tone_stream://%(500,100,440)").unwrap();
        assert_eq!(clip.samples.len(), 4800);
        assert_eq!(clip.duration_ms(), Some(600));
        let f = frequency(&clip.samples[..4000]);
        assert!((f - 440.0).abs() < 5.0, "{f}");
        assert!(clip.samples[4000..].iter().all(|&s| s == 0));
        let ring = Clip::tone_stream("tone_stream://%(2000,4000,440,480);loops=-1").unwrap();
        assert_eq!(ring.repeat, Repeat::Forever);
        assert_eq!(ring.duration_ms(), None);
        let three = Clip::tone_stream("tone_stream://L=3;v=-6;%(100,100,350,440)").unwrap();
        assert_eq!(three.duration_ms(), Some(600));
        for bad in [
            "tone_stream://",
            "tone_stream://%(a,b,c)",
            "tone_stream://%(1)",
            "tone_stream://x=1;%(1,1,1)",
        ] {
            assert!(Clip::tone_stream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wav_at_any_rate_becomes_8k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 22050,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..22050 {
            let v = ((TAU * 600.0 * i as f32 / 22050.0).sin() * 16000.0) as i16;
            writer.write_sample(v).unwrap();
            writer.write_sample(v).unwrap();
        }
        writer.finalize().unwrap();
        let clip = Clip::from_wav(&path).unwrap();
        let len = clip.samples.len() as i64;
        assert!((len - 8000).abs() < 200, "{len}");
        let f = frequency(&clip.samples[1000..7000]);
        assert!((f - 600.0).abs() < 10.0, "{f}");
        let peak = clip.samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((14000..18000).contains(&peak), "{peak}");
        assert!(Clip::from_wav(&dir.path().join("missing.wav")).is_err());
    }

    #[test]
    fn only_rates_with_a_small_ratio_are_resampled() {
        for rate in [
            8000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000,
        ] {
            assert!(resamplable(rate), "{rate}");
        }
        for rate in [0, 999, 4_294_967_291, 44_101, 400_000] {
            assert!(!resamplable(rate), "{rate}");
            assert!(resample(&[0.0; 16], rate).is_err(), "{rate}");
        }
    }
}
