//! [`Limits`]: how much an untrusted photo may make us read, decode and allocate.

/// Bounds checked before any pixel is decoded. The defaults take any current phone's photo
/// (a 200 MP sensor stores 12–50 MP images by default) and refuse decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Encoded size: anything longer is refused before parsing (uploads are capped earlier too).
    pub max_input_bytes: usize,
    /// Longest side in pixels: bounds a single row's buffers whatever the pixel count.
    pub max_side_px: u32,
    /// Width × height: bounds decode time and the RGB output.
    pub max_pixels: u64,
    /// Bytes any one decode may allocate (intermediate 16-bit or RGBA buffers included).
    pub max_alloc_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 40 * 1024 * 1024,
            max_side_px: 16_384,
            max_pixels: 64_000_000,
            max_alloc_bytes: 768 * 1024 * 1024,
        }
    }
}
