//! Media on the worker's CPU budget: decoding a 12 MP phone JPEG and fitting it to a 512² model
//! input (zune-jpeg strict + EOI walk + fast_image_resize), and encoding a 48-frame 512² clip
//! and smaller ones with each encoder (DESIGN.md §7 measured ~0.7 s CPU for x264 veryfast, ~0.2 s
//! for openh264 at 512²; small clips show the cost of a process per clip).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::hint::black_box;

use clipfleet_media::{
    FfmpegEncoder, FitMode, Limits, Openh264Encoder, RgbImage, VideoEncoder, decode, fit,
};
use criterion::{Criterion, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// A 4000×3000 (12 MP) JPEG at quality 90: gradients plus noise, so its entropy-coded data is
/// about as dense as a photo's.
fn photo_jpeg() -> Vec<u8> {
    let (width, height) = (4000u32, 3000u32);
    let mut state = 0x9E37_79B9u32;
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state & 0x1F) as u8;
            pixels.push((x * 200 / width) as u8 + noise);
            pixels.push((y * 200 / height) as u8 + noise);
            pixels.push(((x + y) * 100 / (width + height)) as u8 + noise);
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
        .expect("encode jpeg");
    out
}

/// `frames` frames of `side`²: a gradient panning and a square moving, like a model's zoom/pan
/// output.
fn clip(side: u32, frames: u32) -> Vec<RgbImage> {
    let square = side / 8;
    (0..frames)
        .map(|t| {
            let mut data = Vec::with_capacity((side * side * 3) as usize);
            for y in 0..side {
                for x in 0..side {
                    let inside = (t * side / 64..t * side / 64 + square).contains(&x)
                        && (side * 2 / 5..side * 2 / 5 + square).contains(&y);
                    if inside {
                        data.extend_from_slice(&[230, 40, 40]);
                    } else {
                        data.extend_from_slice(&[
                            ((x + t * 4) % 256) as u8,
                            (y / 2) as u8,
                            ((x + y) / 4) as u8,
                        ]);
                    }
                }
            }
            RgbImage::new(side, side, data).expect("frame")
        })
        .collect()
}

fn intake(c: &mut Criterion) {
    let jpeg = photo_jpeg();
    let limits = Limits::default();
    let mut group = c.benchmark_group("intake 12 MP jpeg");
    group.sample_size(10);
    group.bench_function("decode", |b| {
        b.iter(|| decode(black_box(&jpeg), &limits).expect("decode"));
    });
    let decoded = decode(&jpeg, &limits).expect("decode");
    group.bench_function("fit cover 512x512", |b| {
        b.iter(|| fit(black_box(&decoded), 512, 512, FitMode::Cover).expect("fit"));
    });
    group.bench_function("decode + fit cover 512x512", |b| {
        b.iter(|| {
            let image = decode(black_box(&jpeg), &limits).expect("decode");
            fit(&image, 512, 512, FitMode::Cover).expect("fit")
        });
    });
    group.finish();
}

/// Both encoders on the model's full clip and on small ones: where a process spawn per clip
/// stops paying for x264's smaller files (the worker's `SizeRoutedEncoder` threshold).
fn encode(c: &mut Criterion) {
    let encoders: Vec<Box<dyn VideoEncoder>> = vec![
        Box::new(FfmpegEncoder::detect().expect("ffmpeg with libx264")),
        Box::new(Openh264Encoder),
    ];
    for (side, count, samples) in [(512, 48, 10), (256, 16, 20), (128, 12, 30), (64, 4, 50)] {
        let frames = clip(side, count);
        let mut group = c.benchmark_group(format!("encode {count} frames {side}x{side} at 24 fps"));
        group.sample_size(samples);
        for encoder in &encoders {
            let bytes = encoder.encode(&frames, 24).expect("encode").len();
            // Criterion prints timings only; the size is the other half of the trade-off.
            println!("{side}x{side}x{count} {}: {bytes} bytes", encoder.name());
            group.bench_function(encoder.name(), |b| {
                b.iter(|| encoder.encode(black_box(&frames), 24).expect("encode"));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, intake, encode);
criterion_main!(benches);
