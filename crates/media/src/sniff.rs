//! Recognising an image format from its first bytes, never from a name or a content type.

/// The photo formats we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG/JFIF/EXIF.
    Jpeg,
    /// PNG.
    Png,
    /// WebP (lossy or lossless) in its RIFF container.
    WebP,
    /// HEIF with an HEVC image (`heic`/`heix`/`mif1` brands): what phones upload.
    Heic,
}

impl ImageFormat {
    /// A lowercase name for messages and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::WebP => "webp",
            ImageFormat::Heic => "heic",
        }
    }
}

/// ISO-BMFF major brands of HEIF images with HEVC (or HEVC-capable) content. AVIF (`avif`) is a
/// different codec and is not among them.
const HEIC_BRANDS: [&[u8; 4]; 6] = [b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"];

/// The format the magic bytes announce, or `None` for anything else. Only the first 12 bytes
/// are read; whether the rest decodes is [`crate::probe`]'s and [`crate::decode`]'s business.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(ImageFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(ImageFormat::Png);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(ImageFormat::WebP);
    }
    // ISO-BMFF: a `ftyp` box first, its major brand right after the type.
    if bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && HEIC_BRANDS.iter().any(|b| &bytes[8..12] == *b)
    {
        return Some(ImageFormat::Heic);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_format() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(ImageFormat::WebP));
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0"),
            Some(ImageFormat::Heic)
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0"),
            Some(ImageFormat::Heic)
        );
    }

    #[test]
    fn other_bytes_are_not_a_format() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0xFF, 0xD8]), None);
        assert_eq!(sniff(b"GIF89a\0\0\0\0\0\0"), None);
        assert_eq!(sniff(b"\0\0\0\x18ftypavif\0\0\0\0"), None);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
    }
}
