//! `clip-frames PHOTO OUT_DIR`: runs an image-to-video model on one photo and writes the video's
//! frames as PNG files. The shortest path from a photo to moving pictures, straight through
//! libtorch; the fleet (`clipctl generate`) does the same through ingest, broker and worker.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clipfleet_infer::{Device, RgbFrame, VideoModel, frames_to_batch, video_to_frames};
use image::imageops::FilterType;

/// The reference model committed in the repository (`models/export_reference_zoom.py`).
const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/reference_zoom.pt"
);

/// Longest side the photo is scaled to before inference.
const DEFAULT_MAX_SIDE: u32 = 512;

const USAGE: &str = "usage: clip-frames PHOTO OUT_DIR [--model FILE.pt] [--max-side PIXELS]";

struct Args {
    photo: PathBuf,
    out_dir: PathBuf,
    model: PathBuf,
    max_side: u32,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let mut model = PathBuf::from(DEFAULT_MODEL);
    let mut max_side = DEFAULT_MAX_SIDE;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model = args.next().context("--model needs a file")?.into(),
            "--max-side" => {
                let value = args.next().context("--max-side needs a number")?;
                max_side = value
                    .parse()
                    .with_context(|| format!("--max-side {value}"))?;
                if !(16..=4096).contains(&max_side) {
                    bail!("--max-side must be 16..=4096");
                }
            }
            "-h" | "--help" => bail!("{USAGE}"),
            flag if flag.starts_with("--") => bail!("unknown flag {flag}\n{USAGE}"),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [photo, out_dir] =
        <[PathBuf; 2]>::try_from(positional).map_err(|_| anyhow::anyhow!("{USAGE}"))?;
    Ok(Args {
        photo,
        out_dir,
        model,
        max_side,
    })
}

fn load_photo(path: &Path, max_side: u32) -> anyhow::Result<RgbFrame> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("open {}", path.display()))?
        .with_guessed_format()
        .context("read photo header")?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(12_000);
    limits.max_image_height = Some(12_000);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let photo = reader
        .decode()
        .with_context(|| format!("decode {}", path.display()))?;
    let scale = f64::from(max_side) / f64::from(photo.width().max(photo.height()));
    let photo = if scale < 1.0 {
        let width = ((f64::from(photo.width()) * scale).round() as u32).max(1);
        let height = ((f64::from(photo.height()) * scale).round() as u32).max(1);
        photo.resize_exact(width, height, FilterType::Triangle)
    } else {
        photo
    };
    let rgb = photo.to_rgb8();
    Ok(RgbFrame::new(rgb.width(), rgb.height(), rgb.into_raw())?)
}

#[allow(clippy::print_stdout)] // a command-line tool reporting what it wrote
fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    // One intra-op thread: on a small shared machine more threads are slower and noisier.
    tch::set_num_threads(1);
    let device = Device::cuda_if_available();
    let started = Instant::now();
    let model = VideoModel::load(&args.model, device)?;
    let photo = load_photo(&args.photo, args.max_side)?;
    let (width, height) = (photo.width, photo.height);
    let batch = frames_to_batch(&[photo], device)?;
    let rendered = Instant::now();
    let video = model.render(&batch)?;
    let render_ms = rendered.elapsed().as_millis();
    let frames = video_to_frames(&video)?
        .pop()
        .context("model returned no video")?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("create {}", args.out_dir.display()))?;
    for (index, frame) in frames.iter().enumerate() {
        let path = args.out_dir.join(format!("frame_{index:03}.png"));
        image::save_buffer(
            &path,
            &frame.data,
            frame.width,
            frame.height,
            image::ColorType::Rgb8,
        )
        .with_context(|| format!("write {}", path.display()))?;
    }
    println!(
        "{} frames of {width}x{height} in {} on {device:?} (forward {render_ms} ms, total {} ms)",
        frames.len(),
        args.out_dir.display(),
        started.elapsed().as_millis()
    );
    Ok(())
}
