//! Media's integration tests in one binary: photo intake, HEIC through libheif, and both video
//! encoders read back by ffprobe.

mod encoders;
mod heic;
mod intake;
