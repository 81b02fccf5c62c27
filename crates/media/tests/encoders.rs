//! Both encoders held to the same checks, read back by ffprobe: codec, frame count, frame rate,
//! size, pixel format, colour tags, and moov before mdat. These need `ffmpeg` and `ffprobe`
//! (scripts/install-system-deps.sh installs them): without them they fail, never skip.

use std::process::Command;

use clipfleet_media::{FfmpegEncoder, MediaErrorKind, Openh264Encoder, RgbImage, VideoEncoder};

const WIDTH: u32 = 128;
const HEIGHT: u32 = 96;
const FRAMES: usize = 24;
const FPS: u32 = 12;

/// A red square sliding right over a blue-to-green gradient: every frame differs.
fn frames() -> Vec<RgbImage> {
    (0..FRAMES)
        .map(|index| {
            let mut data = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
            let left = index as u32 * 3;
            for y in 0..HEIGHT {
                for x in 0..WIDTH {
                    if (left..left + 24).contains(&x) && (36..60).contains(&y) {
                        data.extend_from_slice(&[255, 0, 0]);
                    } else {
                        let green = (x * 255 / WIDTH) as u8;
                        data.extend_from_slice(&[0, green, 255 - green]);
                    }
                }
            }
            RgbImage::new(WIDTH, HEIGHT, data).unwrap()
        })
        .collect()
}

fn encoders() -> Vec<Box<dyn VideoEncoder>> {
    let ffmpeg =
        FfmpegEncoder::detect().expect("ffmpeg with libx264 (scripts/install-system-deps.sh)");
    vec![Box::new(ffmpeg), Box::new(Openh264Encoder)]
}

/// The top-level ISO-BMFF box types in file order.
fn top_level_boxes(mp4: &[u8]) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut at = 0usize;
    while at + 8 <= mp4.len() {
        let size32 = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as usize;
        kinds.push(String::from_utf8_lossy(&mp4[at + 4..at + 8]).into_owned());
        let size = match size32 {
            0 => mp4.len() - at,
            1 => u64::from_be_bytes(mp4[at + 8..at + 16].try_into().unwrap()) as usize,
            n => n,
        };
        assert!(size >= 8, "box of size {size} at {at}");
        at += size;
    }
    assert_eq!(at, mp4.len(), "boxes do not tile the file");
    kinds
}

fn ffprobe(path: &std::path::Path) -> serde_json::Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (scripts/install-system-deps.sh)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The first decoded frame as RGB, through ffmpeg.
fn first_frame_rgb(path: &std::path::Path) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ])
        .output()
        .expect("ffmpeg");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn both_encoders_write_faststart_h264_mp4_that_ffprobe_reads_back() {
    let frames = frames();
    let dir = tempfile::tempdir().unwrap();
    for encoder in encoders() {
        let name = encoder.name();
        let mp4 = encoder.encode(&frames, FPS).unwrap();
        let boxes = top_level_boxes(&mp4);
        let moov = boxes.iter().position(|b| b == "moov").expect("a moov box");
        let mdat = boxes.iter().position(|b| b == "mdat").expect("an mdat box");
        assert!(moov < mdat, "{name}: moov after mdat: {boxes:?}");
        assert_eq!(boxes.first().map(String::as_str), Some("ftyp"), "{name}");

        let path = dir.path().join(format!("{name}.mp4"));
        std::fs::write(&path, &mp4).unwrap();
        let probe = ffprobe(&path);
        let streams = probe["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 1, "{name}: {probe}");
        let video = &streams[0];
        assert_eq!(video["codec_name"], "h264", "{name}");
        assert_eq!(video["nb_read_frames"], FRAMES.to_string(), "{name}");
        assert_eq!(video["nb_frames"], FRAMES.to_string(), "{name}");
        assert_eq!(video["r_frame_rate"], format!("{FPS}/1"), "{name}");
        assert_eq!(video["avg_frame_rate"], format!("{FPS}/1"), "{name}");
        assert_eq!(video["width"], WIDTH, "{name}");
        assert_eq!(video["height"], HEIGHT, "{name}");
        assert_eq!(video["pix_fmt"], "yuv420p", "{name}");
        assert_eq!(video["color_range"], "tv", "{name}");
        assert_eq!(video["color_space"], "bt709", "{name}");
        assert_eq!(video["color_primaries"], "bt709", "{name}");
        assert_eq!(video["color_transfer"], "bt709", "{name}");
        let duration: f64 = probe["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((duration - 2.0).abs() < 0.01, "{name}: duration {duration}");
        assert!(
            probe["format"]["format_name"]
                .as_str()
                .unwrap()
                .contains("mp4"),
            "{name}"
        );

        // The pixels survive: the red square sits at x 0..24, y 36..60 in frame 0, the
        // background right edge is green.
        let rgb = first_frame_rgb(&path);
        assert_eq!(rgb.len(), (WIDTH * HEIGHT * 3) as usize, "{name}");
        let at = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        let [r, g, b] = at(12, 48);
        assert!(r > 200 && g < 60 && b < 60, "{name}: square is {r},{g},{b}");
        let [r, g, b] = at(124, 10);
        assert!(
            r < 60 && g > 200 && b < 60,
            "{name}: right edge is {r},{g},{b}"
        );
    }
}

#[test]
fn both_encoders_refuse_frames_that_break_the_contract() {
    let odd = RgbImage::new(5, 4, vec![0; 60]).unwrap();
    let even = RgbImage::new(4, 4, vec![0; 48]).unwrap();
    for encoder in encoders() {
        let kind = |frames: &[RgbImage], fps| encoder.encode(frames, fps).unwrap_err().kind;
        assert_eq!(kind(&[], FPS), MediaErrorKind::InvalidInput);
        assert_eq!(
            kind(std::slice::from_ref(&odd), FPS),
            MediaErrorKind::InvalidInput
        );
        assert_eq!(
            kind(std::slice::from_ref(&even), 0),
            MediaErrorKind::InvalidInput
        );
        assert_eq!(
            kind(&[even.clone(), odd.clone()], FPS),
            MediaErrorKind::InvalidInput
        );
    }
}

#[test]
fn a_missing_ffmpeg_is_reported_as_unavailable() {
    let err = FfmpegEncoder::with_binary("/nonexistent/ffmpeg").unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::EncoderUnavailable);
    assert!(err.message.contains("/nonexistent/ffmpeg"), "{err}");
}

#[test]
fn a_stuck_ffmpeg_is_killed_at_the_deadline() {
    let mut encoder = FfmpegEncoder::detect().expect("ffmpeg");
    encoder.timeout = std::time::Duration::from_millis(1);
    let err = encoder.encode(&frames(), FPS).unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::EncoderFailed);
    assert!(err.message.contains("ran past"), "{err}");
}

#[test]
fn a_failing_ffmpeg_reports_its_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("ffmpeg");
    // Claims libx264, then fails every encode.
    std::fs::write(
        &fake,
        concat!(
            "#!/bin/sh\n",
            "if [ \"$2\" = -encoders ]; then echo ' V..... libx264'; exit 0; fi\n",
            "echo 'no space left on device' >&2\n",
            "exit 1\n",
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let encoder = FfmpegEncoder::with_binary(&fake).unwrap();
    let err = encoder.encode(&frames(), FPS).unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::EncoderFailed);
    assert!(err.message.contains("no space left on device"), "{err}");
}

#[test]
fn openh264_reuses_its_encoder_and_every_clip_still_decodes_on_its_own() {
    // The same thread, the same size: the second and third clips come from the encoder that
    // wrote the first. Each must start with its own IDR frame, or ffmpeg cannot decode frame 0
    // without the previous clip (and the pixel checks below fail).
    let forward = frames();
    let mut backward = forward.clone();
    backward.reverse();
    let dir = tempfile::tempdir().unwrap();
    for (round, clip) in [&backward, &forward, &forward].into_iter().enumerate() {
        let mp4 = Openh264Encoder.encode(clip, FPS).unwrap();
        let path = dir.path().join(format!("clip-{round}.mp4"));
        std::fs::write(&path, &mp4).unwrap();
        let probe = ffprobe(&path);
        assert_eq!(
            probe["streams"][0]["nb_read_frames"],
            FRAMES.to_string(),
            "clip {round}"
        );
        let rgb = first_frame_rgb(&path);
        let left = if round == 0 {
            (FRAMES as u32 - 1) * 3
        } else {
            0
        };
        let i = ((48 * WIDTH + left + 12) * 3) as usize;
        let [r, g, b] = [rgb[i], rgb[i + 1], rgb[i + 2]];
        assert!(
            r > 200 && g < 60 && b < 60,
            "clip {round}: the square's centre is {r},{g},{b}"
        );
    }
}
