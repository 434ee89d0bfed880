//! Uploaded audio made into what calls play cheapest: 8 kHz mono 16-bit
//! PCM WAV, the format [`super::Clip::from_wav`] reads without resampling.
//!
//! WAV (any rate, channels and PCM width hound reads, or 32-bit floats)
//! and MP3 (symphonia) are decoded in memory, mixed down to mono and
//! resampled to 8 kHz. Decoding stops past [`MAX_SECONDS`] of audio, so a
//! small file cannot expand into gigabytes.

// Signal processing: sample counts and levels move between integers and
// floats on purpose (bounded values; rounding is the point).
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use std::io::Cursor;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

use super::audio::{resample, to_i16};
use super::g711::RATE;

/// The longest upload accepted, in seconds of audio (10 minutes: 9.6 MB
/// at 8 kHz 16-bit, under the media schema's `content_length` maximum).
pub const MAX_SECONDS: u32 = 10 * 60;

/// An upload's encoding, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wav,
    Mp3,
}

impl Format {
    /// The format of a `Content-Type` (parameters and case ignored):
    /// `audio/wav`, `audio/x-wav`, `audio/wave`, `audio/vnd.wave`;
    /// `audio/mpeg`, `audio/mp3`, `audio/mpeg3`, `audio/x-mpeg-3`.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some(Self::Wav),
            "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg-3" => Some(Self::Mp3),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Wav => "WAV",
            Self::Mp3 => "MP3",
        }
    }
}

/// Why an upload could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// Not a stream of that format, or a broken one.
    #[error("the body is not {format} audio this server can decode: {why}")]
    Undecodable { format: &'static str, why: String },
    /// Longer than [`MAX_SECONDS`].
    #[error("the audio is longer than the {limit} s an upload may last")]
    TooLong { limit: u32 },
    /// Decoded, but without a single sample.
    #[error("the {format} body holds no audio")]
    Empty { format: &'static str },
}

/// Converted audio: the WAV file's bytes and how long it plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub wav: Vec<u8>,
    pub duration_ms: u64,
}

/// Decodes `bytes` as `format` and writes them as 8 kHz mono 16-bit WAV.
pub fn to_phone_wav(bytes: &[u8], format: Format) -> Result<Converted, ConvertError> {
    let (mono, rate) = match format {
        Format::Wav => decode_wav(bytes)?,
        Format::Mp3 => decode_mp3(bytes)?,
    };
    if mono.is_empty() {
        return Err(ConvertError::Empty {
            format: format.name(),
        });
    }
    let at_8k = resample(&mono, rate).map_err(|why| ConvertError::Undecodable {
        format: format.name(),
        why,
    })?;
    let samples: Vec<i16> = at_8k.iter().map(|&s| to_i16(s)).collect();
    Ok(Converted {
        duration_ms: samples.len() as u64 * 1000 / u64::from(RATE),
        wav: encode_wav(&samples),
    })
}

/// 8 kHz mono 16-bit PCM samples as a WAV file.
pub fn encode_wav(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    // Writing to memory cannot fail, and the data is far under the 4 GiB a
    // WAV file may hold (MAX_SECONDS of 8 kHz samples), so the errors
    // below never happen; an empty file would be refused when played.
    if let Ok(mut writer) = hound::WavWriter::new(&mut out, spec) {
        for &sample in samples {
            if writer.write_sample(sample).is_err() {
                break;
            }
        }
        let _ = writer.finalize();
    }
    out.into_inner()
}

/// A WAV file's samples mixed down to mono, and its rate.
fn decode_wav(bytes: &[u8]) -> Result<(Vec<f32>, u32), ConvertError> {
    let error = |why: String| ConvertError::Undecodable { format: "WAV", why };
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| error(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_rate == 0 {
        return Err(error("the sample rate is 0".to_owned()));
    }
    if u64::from(reader.duration()) > u64::from(spec.sample_rate) * u64::from(MAX_SECONDS) {
        return Err(ConvertError::TooLong { limit: MAX_SECONDS });
    }
    let channels = usize::from(spec.channels.max(1));
    let interleaved = super::audio::wav_samples(&mut reader).map_err(|e| error(e.to_string()))?;
    Ok((mix_down(&interleaved, channels), spec.sample_rate))
}

/// Interleaved frames of `channels` samples as their mean.
fn mix_down(interleaved: &[f32], channels: usize) -> Vec<f32> {
    interleaved
        .chunks(channels.max(1))
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect()
}

/// An MP3 stream's samples mixed down to mono, and its rate. Frames that
/// do not decode are skipped (as players do); a stream with none that
/// does is an error.
fn decode_mp3(bytes: &[u8]) -> Result<(Vec<f32>, u32), ConvertError> {
    let error = |why: String| ConvertError::Undecodable { format: "MP3", why };
    let source = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| error(e.to_string()))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| error("no audio track".to_owned()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| error("no audio codec parameters".to_owned()))?;
    let mut codec = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| error(e.to_string()))?;
    let mut mono: Vec<f32> = Vec::new();
    let mut rate: Option<u32> = None;
    let mut frame: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A stream cut short ends there, as players treat it.
            Err(SymphoniaError::IoError(_)) if rate.is_some() => break,
            Err(e) => return Err(error(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let audio = match codec.decode(&packet) {
            Ok(audio) => audio,
            Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_)) => continue,
            Err(e) => return Err(error(e.to_string())),
        };
        let spec = audio.spec();
        let this_rate = spec.rate();
        match rate {
            None => rate = Some(this_rate),
            Some(first) if first != this_rate => {
                return Err(error(format!(
                    "the sample rate changes from {first} Hz to {this_rate} Hz"
                )));
            }
            Some(_) => {}
        }
        let channels = spec.channels().count();
        audio.copy_to_vec_interleaved(&mut frame);
        mono.extend(mix_down(&frame, channels));
        if mono.len() as u64 > u64::from(this_rate) * u64::from(MAX_SECONDS) {
            return Err(ConvertError::TooLong { limit: MAX_SECONDS });
        }
    }
    let rate = rate.ok_or_else(|| error("no MP3 frame decodes".to_owned()))?;
    Ok((mono, rate))
}

#[cfg(test)]
#[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
mod tests {
    use super::*;

    /// `seconds` of a 500 Hz tone as a WAV file.
    fn tone_wav(rate: u32, channels: u16, bits: u16, seconds: f32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
        let full = f32::from(i16::MAX);
        for i in 0..(rate as f32 * seconds) as u32 {
            let t = i as f32 / rate as f32;
            let v = (std::f32::consts::TAU * 500.0 * t).sin() * 0.5;
            for _ in 0..channels {
                if bits == 8 {
                    writer.write_sample((v * 127.0) as i8).unwrap();
                } else {
                    writer.write_sample((v * full) as i16).unwrap();
                }
            }
        }
        writer.finalize().unwrap();
        out.into_inner()
    }

    fn read_back(wav: &[u8]) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::new(Cursor::new(wav)).unwrap();
        let samples = reader.samples::<i16>().map(Result::unwrap).collect();
        (reader.spec(), samples)
    }

    #[test]
    fn wavs_of_any_shape_become_8k_mono_16_bit() {
        for (rate, channels, bits) in [(16_000, 2, 16), (44_100, 1, 16), (8000, 1, 8)] {
            let converted = to_phone_wav(&tone_wav(rate, channels, bits, 1.5), Format::Wav)
                .unwrap_or_else(|e| panic!("{rate} Hz, {channels} ch, {bits} bits: {e}"));
            let (spec, samples) = read_back(&converted.wav);
            assert_eq!(
                (spec.sample_rate, spec.channels, spec.bits_per_sample),
                (8000, 1, 16)
            );
            let len = samples.len() as i64;
            assert!((len - 12_000).abs() < 200, "{rate}: {len} samples");
            assert!((1400..1600).contains(&converted.duration_ms), "{rate}");
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((14_000..18_000).contains(&peak), "{rate}: peak {peak}");
        }
    }

    #[test]
    fn bad_audio_is_refused_with_the_reason() {
        let garbage = b"this is certainly not audio".repeat(10);
        for format in [Format::Wav, Format::Mp3] {
            let err = to_phone_wav(&garbage, format).unwrap_err();
            assert!(
                matches!(err, ConvertError::Undecodable { .. }),
                "{format:?}: {err}"
            );
        }
        let err = to_phone_wav(&tone_wav(8000, 1, 16, 0.0), Format::Wav).unwrap_err();
        assert_eq!(err, ConvertError::Empty { format: "WAV" });
        // A header that claims more than the limit is refused before the
        // samples are read.
        let mut long = tone_wav(8000, 1, 16, 0.1);
        let claimed = 8000 * 2 * (MAX_SECONDS + 1);
        long[40..44].copy_from_slice(&claimed.to_le_bytes());
        assert_eq!(
            to_phone_wav(&long, Format::Wav).unwrap_err(),
            ConvertError::TooLong { limit: MAX_SECONDS }
        );
    }

    #[test]
    fn mp3_becomes_8k_mono_16_bit() {
        let mp3 = include_bytes!("../../tests/it/fixtures/tone-500hz-1s.mp3");
        let converted = to_phone_wav(mp3, Format::Mp3).unwrap();
        let (spec, samples) = read_back(&converted.wav);
        assert_eq!((spec.sample_rate, spec.channels), (8000, 1));
        // One second, give or take the encoder's padding frames.
        assert!(
            (950..1200).contains(&converted.duration_ms),
            "{}",
            converted.duration_ms
        );
        let middle = &samples[2000..6000];
        let crossings = middle
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        // 500 Hz: 1000 zero crossings a second, 500 in half a second.
        assert!((480..520).contains(&crossings), "{crossings}");
        // Cut short: what decodes is kept.
        let cut = to_phone_wav(&mp3[..mp3.len() / 2], Format::Mp3).unwrap();
        assert!(cut.duration_ms < converted.duration_ms);
    }

    #[test]
    fn content_types() {
        for (ct, format) in [
            ("audio/wav", Some(Format::Wav)),
            ("Audio/X-WAV", Some(Format::Wav)),
            ("audio/wave; codecs=1", Some(Format::Wav)),
            ("audio/mpeg", Some(Format::Mp3)),
            ("audio/mp3", Some(Format::Mp3)),
            ("audio/ogg", None),
            ("application/json", None),
            ("", None),
        ] {
            assert_eq!(Format::from_content_type(ct), format, "{ct}");
        }
    }
}
