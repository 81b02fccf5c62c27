//! The inputs a load test sends: photos of a few sizes as JPEG and PNG, made once at start, and
//! bad inputs with the refusal code each must get. Plus the small seeded generator that picks
//! them and spaces the arrivals, so a run can be repeated.

use std::io::Cursor;

use anyhow::Context;
use bytes::Bytes;
use clipfleet_proto::ErrorCode;

use crate::options::{Mix, PhotoSize};

/// One input of the mix.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// What it is (`jpeg 640x480`, `truncated jpeg`), for the report.
    pub label: String,
    /// The bytes sent as the photo part.
    pub bytes: Bytes,
    /// The refusal a bad input must get; `None` for a photo that must be accepted.
    pub expect: Option<ErrorCode>,
}

/// Every input, with the shares they are picked by.
#[derive(Debug)]
pub(crate) struct Inputs {
    jpegs: Vec<Input>,
    pngs: Vec<Input>,
    bad: Vec<Input>,
    png_share: f64,
    bad_share: f64,
}

impl Inputs {
    /// Encodes one photo per size and format, and the bad inputs.
    pub fn generate(mix: &Mix) -> anyhow::Result<Inputs> {
        anyhow::ensure!(!mix.sizes.is_empty(), "the mix has no photo size");
        anyhow::ensure!(
            (0.0..=1.0).contains(&mix.png_share) && (0.0..=1.0).contains(&mix.bad_share),
            "shares are fractions of 0..=1"
        );
        let mut jpegs = Vec::new();
        let mut pngs = Vec::new();
        for size in &mix.sizes {
            jpegs.push(Input {
                label: format!("jpeg {size}"),
                bytes: encode(*size, image::ImageFormat::Jpeg)?,
                expect: None,
            });
            pngs.push(Input {
                label: format!("png {size}"),
                bytes: encode(*size, image::ImageFormat::Png)?,
                expect: None,
            });
        }
        // Cut past the header, so it sniffs and probes as a JPEG and fails only on decode.
        let whole = &jpegs[0].bytes;
        let truncated = whole.slice(..whole.len() * 2 / 3);
        let bad = vec![
            Input {
                label: "truncated jpeg".into(),
                bytes: truncated,
                expect: Some(ErrorCode::BadImage),
            },
            Input {
                label: "not an image".into(),
                bytes: Bytes::from_static(b"%PDF-1.7\n% a document, not a photo\n"),
                expect: Some(ErrorCode::UnsupportedFormat),
            },
        ];
        Ok(Inputs {
            jpegs,
            pngs,
            bad,
            png_share: mix.png_share,
            bad_share: mix.bad_share,
        })
    }

    /// Picks the next input.
    pub fn pick(&self, rng: &mut SplitMix64) -> &Input {
        let group = if rng.unit() < self.bad_share {
            &self.bad
        } else if rng.unit() < self.png_share {
            &self.pngs
        } else {
            &self.jpegs
        };
        &group[rng.below(group.len())]
    }

    /// Picks a photo (never a bad input): JPEG or PNG by the mix's share, any size.
    pub fn pick_photo(&self, rng: &mut SplitMix64) -> &Input {
        let group = if rng.unit() < self.png_share {
            &self.pngs
        } else {
            &self.jpegs
        };
        &group[rng.below(group.len())]
    }
}

/// A synthetic photo of the mix: smooth gradients with some texture, so JPEG sizes are
/// photo-like. Public so the worker bench measures its stages on the load test's own photos.
pub fn encode(size: PhotoSize, format: image::ImageFormat) -> anyhow::Result<Bytes> {
    let PhotoSize { width, height } = size;
    let photo = image::RgbImage::from_fn(width, height, |x, y| {
        let texture = ((x * 7 + y * 13) ^ (x * y)) % 32;
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(texture as u8),
            (y * 255 / height) as u8,
            (((x + y) * 127 / (width + height)) as u8).wrapping_add(texture as u8 / 2),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    photo
        .write_to(&mut out, format)
        .with_context(|| format!("encode a {size} {format:?}"))?;
    Ok(Bytes::from(out.into_inner()))
}

/// SplitMix64: a tiny, seedable generator. Statistical quality is ample for picking inputs and
/// spacing arrivals; nothing here needs a cryptographic generator.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// An exponential gap with mean `mean_secs` (inverse transform sampling).
    pub fn exponential(&mut self, mean_secs: f64) -> f64 {
        -(1.0 - self.unit()).ln() * mean_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_repeatable_and_in_range() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..1000 {
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(a.below(3) < 3);
        }
    }

    #[test]
    fn exponential_gaps_have_the_mean_asked_for() {
        let mut rng = SplitMix64::new(42);
        let n = 20_000;
        let mean = (0..n).map(|_| rng.exponential(0.05)).sum::<f64>() / f64::from(n);
        assert!((mean - 0.05).abs() < 0.003, "mean gap {mean}");
    }

    #[test]
    fn mix_follows_its_shares() -> anyhow::Result<()> {
        let mix = Mix {
            sizes: vec!["64x48".parse().map_err(anyhow::Error::msg)?],
            png_share: 0.5,
            bad_share: 0.2,
        };
        let inputs = Inputs::generate(&mix)?;
        let mut rng = SplitMix64::new(3);
        let n = 10_000;
        let picks: Vec<&Input> = (0..n).map(|_| inputs.pick(&mut rng)).collect();
        let bad = picks.iter().filter(|i| i.expect.is_some()).count();
        let png = picks.iter().filter(|i| i.label.starts_with("png")).count();
        assert!((1800..2200).contains(&bad), "{bad} bad of {n}");
        assert!((3700..4300).contains(&png), "{png} png of {n}");
        // Photos only, when asked for one.
        assert!((0..1000).all(|_| inputs.pick_photo(&mut rng).expect.is_none()));
        // The photos are what they claim to be.
        assert!(inputs.jpegs[0].bytes.starts_with(&[0xFF, 0xD8]));
        assert!(inputs.pngs[0].bytes.starts_with(b"\x89PNG"));
        Ok(())
    }
}
