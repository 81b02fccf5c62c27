//! [`RgbImage`]: the pixels that go into a model and come out of it as video frames.

use crate::{MediaError, MediaErrorKind};

/// An image as tightly packed 8-bit RGB, row-major (`width * height * 3` bytes): the same layout
/// as `clipfleet_infer::RgbFrame`, so the worker converts between them by moving the fields.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R G B per pixel.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    // Pixels are user media: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// Checks that `data` holds exactly `width * height` RGB pixels.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, MediaError> {
        let expected = u64::from(width) * u64::from(height) * 3;
        if width == 0 || height == 0 || data.len() as u64 != expected {
            return Err(MediaError::new(
                MediaErrorKind::InvalidInput,
                format!(
                    "{width}x{height} RGB needs {expected} bytes, got {}",
                    data.len()
                ),
            ));
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// The `[r, g, b]` at (`x`, `y`), or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y as usize * self.width as usize + x as usize) * 3;
        self.data.get(at..at + 3).map(|p| [p[0], p[1], p[2]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_refuses_a_buffer_of_the_wrong_size() {
        assert!(RgbImage::new(2, 2, vec![0; 12]).is_ok());
        let err = RgbImage::new(2, 2, vec![0; 11]).unwrap_err();
        assert_eq!(err.kind, MediaErrorKind::InvalidInput);
        assert!(RgbImage::new(0, 2, vec![]).is_err());
    }

    #[test]
    fn pixel_reads_row_major_rgb() {
        let image = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(image.pixel(1, 0), Some([4, 5, 6]));
        assert_eq!(image.pixel(2, 0), None);
    }
}
