//! A structural check that a JPEG is whole: its segments and entropy-coded scans run, in order,
//! up to an EOI marker. zune-jpeg, even in strict mode, pads a scan cut short and returns `Ok`
//! for some truncations (losing only the EOI, or the scan's last bytes); a phone upload cut by a
//! dropped connection must be refused, not grey-filled.

/// Where the first EOI marker ends, if the marker structure reaches one inside `bytes`. Bytes
/// after EOI (phones append MPF images and vendor trailers) are not looked at.
pub(crate) fn end_of_image(bytes: &[u8]) -> Option<usize> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xFF runs) may precede a marker.
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        while *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = *bytes.get(at + 1)?;
        at += 2;
        match marker {
            0xD9 => return Some(at),
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
        if length < 2 {
            return None;
        }
        at = at.checked_add(length)?;
        if at > bytes.len() {
            return None;
        }
        if marker == 0xDA {
            at = skip_entropy_coded(bytes, at)?;
        }
    }
}

/// From the start of a scan's entropy-coded data to the next marker that is neither a stuffed
/// zero (`FF 00`) nor a restart (`FF D0`..`FF D7`), or `None` if the bytes end first.
fn skip_entropy_coded(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        // memchr scans with SIMD: this walk runs over every uploaded JPEG in ingest.
        let next = at + memchr::memchr(0xFF, bytes.get(at..)?)?;
        match *bytes.get(next + 1)? {
            0x00 | 0xD0..=0xD7 | 0xFF => at = next + 1,
            _ => return Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, a comment segment, a scan header with entropy data holding a stuffed byte and a
    /// restart marker, then EOI and a trailer.
    fn minimal() -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8];
        bytes.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x04, b'h', b'i']);
        bytes.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 0x00]);
        bytes.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        bytes.extend_from_slice(b"trailer");
        bytes
    }

    #[test]
    fn finds_the_eoi_past_stuffing_and_restarts() {
        let bytes = minimal();
        assert_eq!(end_of_image(&bytes), Some(bytes.len() - b"trailer".len()));
    }

    #[test]
    fn every_truncation_before_eoi_is_incomplete() {
        let bytes = minimal();
        let eoi_end = bytes.len() - b"trailer".len();
        for cut in 0..eoi_end {
            assert_eq!(end_of_image(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_segment_length_past_the_end_is_incomplete() {
        assert_eq!(
            end_of_image(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF, 0x00]),
            None
        );
        assert_eq!(end_of_image(&[0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01]), None);
    }
}
