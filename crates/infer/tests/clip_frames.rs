//! `clip-frames` on the committed sample photo: the README's first command, as a test.

use std::path::Path;
use std::process::Command;

fn sample_photo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/samples/hillside.jpg")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-frames-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_photo_becomes_moving_frames() {
    let out = temp_dir("ok");
    let status = Command::new(env!("CARGO_BIN_EXE_clip-frames"))
        .arg(sample_photo())
        .arg(&out)
        .args(["--max-side", "160"])
        .env_remove("LD_LIBRARY_PATH") // libtorch must be found through RUNPATH alone
        .output()
        .expect("run clip-frames");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    let first = image::open(out.join(&names[0]))
        .expect("first frame")
        .to_rgb8();
    let last = image::open(out.join(&names[7]))
        .expect("last frame")
        .to_rgb8();
    assert_eq!(first.dimensions(), (160, 120));
    assert_ne!(first.as_raw(), last.as_raw(), "the frames must move");
    std::fs::remove_dir_all(&out).expect("clean up");
}

#[test]
fn a_broken_photo_fails_cleanly() {
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    // Cut inside the JPEG header. (A JPEG cut inside its scan data decodes with grey fill
    // through `image` alone; strict intake is the media crate's job, not this tool's.)
    let truncated = dir.join("header-cut.jpg");
    let bytes = std::fs::read(sample_photo()).expect("sample");
    std::fs::write(&truncated, &bytes[..60]).expect("write");
    let text = dir.join("notes.jpg");
    std::fs::write(&text, b"not an image at all").expect("write");
    for photo in [&truncated, &text] {
        let output = Command::new(env!("CARGO_BIN_EXE_clip-frames"))
            .arg(photo)
            .arg(dir.join("out"))
            .output()
            .expect("run clip-frames");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: {stderr}",
            photo.display()
        );
        assert!(
            stderr.contains("Error:") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
