//! Photo intake on any bytes (JPEG, PNG, WebP, HEIC seeds): `sniff`, the header-only `probe`
//! and the bounded `decode` return a value or a `MediaError`, never panic, and a decoded image
//! is within the limits with exactly width × height × 3 bytes.
#![no_main]

use clipfleet_media::{Limits, decode, probe, sniff};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_input_bytes: 1 << 20,
    max_side_px: 4096,
    max_pixels: 1 << 20,
    max_alloc_bytes: 64 << 20,
};

fuzz_target!(|data: &[u8]| {
    let _ = sniff(data);
    let probed = probe(data, &LIMITS);
    if let Ok(image) = decode(data, &LIMITS) {
        assert!(probed.is_ok(), "decoded what the probe refused");
        assert!(u64::from(image.width) * u64::from(image.height) <= LIMITS.max_pixels);
        assert!(image.width <= LIMITS.max_side_px && image.height <= LIMITS.max_side_px);
        assert_eq!(
            image.data.len() as u64,
            u64::from(image.width) * u64::from(image.height) * 3
        );
    }
});
