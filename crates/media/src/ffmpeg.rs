//! [`FfmpegEncoder`]: the `ffmpeg` CLI with libx264, fed our I420 on stdin. Smaller files than
//! openh264 for the same quality; found at run time, refused clearly when absent.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::encoder::{I420, check_frames};
use crate::{MediaError, MediaErrorKind, RgbImage, VideoEncoder};

/// H.264 through an `ffmpeg` binary that has libx264.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegEncoder {
    /// The binary: `ffmpeg` on `PATH` unless configured.
    binary: PathBuf,
    /// x264 preset: `veryfast` measured ~0.7 s CPU for 48 frames at 512² (DESIGN.md §7).
    pub preset: &'static str,
    /// x264 constant rate factor: 23 is x264's default quality.
    pub crf: u8,
    /// Wall-clock bound on one encode: a stuck ffmpeg is killed rather than holding a worker
    /// thread forever. Seconds are plenty for clips of a few seconds.
    pub timeout: Duration,
}

/// How often the wait loop checks whether ffmpeg has exited.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Most bytes of ffmpeg's stderr shown in an error message (its tail).
const STDERR_EXCERPT_BYTES: usize = 600;

/// Most bytes of ffmpeg's stderr held in memory while it runs.
const STDERR_KEPT_BYTES: u64 = 64 * 1024;

fn unavailable(why: String) -> MediaError {
    MediaError::new(MediaErrorKind::EncoderUnavailable, why)
}

fn failed(why: String) -> MediaError {
    MediaError::new(MediaErrorKind::EncoderFailed, why)
}

fn excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text.len().saturating_sub(STDERR_EXCERPT_BYTES);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

impl FfmpegEncoder {
    /// Finds `ffmpeg` on `PATH` and checks it has libx264.
    pub fn detect() -> Result<Self, MediaError> {
        Self::with_binary("ffmpeg")
    }

    /// Uses the given binary after checking it runs and has libx264.
    pub fn with_binary(binary: impl AsRef<Path>) -> Result<Self, MediaError> {
        let binary = binary.as_ref().to_path_buf();
        let output = Command::new(&binary)
            .args(["-hide_banner", "-encoders"])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| unavailable(format!("cannot run {}: {err}", binary.display())))?;
        if !output.status.success() {
            return Err(unavailable(format!(
                "{} -encoders failed: {}",
                binary.display(),
                excerpt(&output.stderr)
            )));
        }
        if !String::from_utf8_lossy(&output.stdout).contains("libx264") {
            return Err(unavailable(format!(
                "{} was built without libx264",
                binary.display()
            )));
        }
        Ok(FfmpegEncoder {
            binary,
            preset: "veryfast",
            crf: 23,
            timeout: Duration::from_secs(120),
        })
    }
}

impl VideoEncoder for FfmpegEncoder {
    fn name(&self) -> &'static str {
        "ffmpeg-x264"
    }

    fn encode(&self, frames: &[RgbImage], fps: u32) -> Result<Vec<u8>, MediaError> {
        let (width, height) = check_frames(frames, fps)?;
        // `+faststart` rewrites the file to move moov first: it needs a seekable output, not a
        // pipe. The directory (and the file) go when `dir` drops.
        let dir = tempfile::tempdir().map_err(|err| failed(format!("temp dir: {err}")))?;
        let output_path = dir.path().join("out.mp4");
        let size = format!("{width}x{height}");
        let rate = fps.to_string();
        let crf = self.crf.to_string();
        let mut child = Command::new(&self.binary)
            .args(["-hide_banner", "-loglevel", "error", "-nostats"])
            .args([
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", &size, "-r", &rate,
            ])
            // The input is what `I420::fill` wrote: say so, so nothing converts it again.
            .args(["-color_range", "tv", "-colorspace", "bt709"])
            .args(["-i", "pipe:0", "-an"])
            .args(["-c:v", "libx264", "-preset", self.preset, "-crf", &crf])
            .args(["-pix_fmt", "yuv420p", "-color_range", "tv"])
            .args([
                "-colorspace",
                "bt709",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
            ])
            .args(["-movflags", "+faststart", "-f", "mp4", "-y"])
            .arg(&output_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| unavailable(format!("cannot run {}: {err}", self.binary.display())))?;
        let (Some(mut stdin), Some(mut stderr)) = (child.stdin.take(), child.stderr.take()) else {
            return Err(failed("ffmpeg pipes were not set up".into()));
        };
        // One thread feeds stdin, one drains stderr, this one watches the clock: neither pipe
        // can fill up and stall the other, and a stuck ffmpeg is killed at the deadline.
        let deadline = Instant::now() + self.timeout;
        let (status, fed, log) = std::thread::scope(|scope| {
            let feeder = scope.spawn(move || -> std::io::Result<()> {
                let mut yuv = I420::default();
                for frame in frames {
                    yuv.fill(frame);
                    stdin.write_all(&yuv.y)?;
                    stdin.write_all(&yuv.u)?;
                    stdin.write_all(&yuv.v)?;
                }
                Ok(())
            });
            let drainer = scope.spawn(move || {
                // Keep the head for the error message, discard the rest: a flood stays bounded.
                let mut log = Vec::new();
                let _ = stderr
                    .by_ref()
                    .take(STDERR_KEPT_BYTES)
                    .read_to_end(&mut log);
                let _ = std::io::copy(&mut stderr, &mut std::io::sink());
                log
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(failed(format!("ffmpeg ran past {:?}", self.timeout)));
                    }
                    Ok(None) => std::thread::sleep(POLL_INTERVAL),
                    Err(err) => break Err(failed(format!("waiting for ffmpeg: {err}"))),
                }
            };
            let fed = feeder
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("feeder thread panicked")));
            let log = drainer.join().unwrap_or_default();
            (status, fed, log)
        });
        let status = status?;
        if !status.success() {
            return Err(failed(format!(
                "ffmpeg exited with {status}: {}",
                excerpt(&log)
            )));
        }
        fed.map_err(|err| failed(format!("feeding ffmpeg: {err}")))?;
        std::fs::read(&output_path).map_err(|err| failed(format!("reading ffmpeg output: {err}")))
    }
}
