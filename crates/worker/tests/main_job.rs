//! The README's main job as a test: `clip-worker embedded PHOTO OUT.mp4` turns the sample photo
//! into an MP4 through the worker on embedded defaults and shows the photo is gone.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_sample_photo_becomes_an_mp4_and_the_photo_is_deleted() {
    let out = std::env::temp_dir().join(format!("clip-worker-main-job-{}.mp4", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_clip-worker"))
        .arg("embedded")
        .arg(repo().join("models/samples/hillside.jpg"))
        .arg(&out)
        .args(["--motion", "parallax"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run clip-worker");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("photo deleted from the store after generation: yes"),
        "{stdout}"
    );
    let mp4 = std::fs::read(&out).expect("mp4 written");
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4");
    std::fs::remove_file(&out).expect("clean up");
}

#[test]
fn a_photo_that_is_not_an_image_is_refused_with_its_code() {
    let dir = std::env::temp_dir().join(format!("clip-worker-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("notes.jpg");
    std::fs::write(&bad, b"not an image").expect("write");
    let run = Command::new(env!("CARGO_BIN_EXE_clip-worker"))
        .arg("embedded")
        .arg(&bad)
        .arg(dir.join("out.mp4"))
        .output()
        .expect("run clip-worker");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unsupported_format") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!dir.join("out.mp4").exists());
    std::fs::remove_dir_all(&dir).expect("clean up");
}
