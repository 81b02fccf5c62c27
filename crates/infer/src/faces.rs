//! Face boxes from a detector model (`role = "detector"`, `models/README.md`).
//!
//! The policy promises that no facial feature data is collected: a box exists only in the
//! memory of the job that framed its photo with it. [`FaceBox`] therefore implements neither
//! `Display` nor `Serialize`, and its `Debug` prints no coordinate, so a `?boxes` in a log line
//! or span field says only how many there were. `crates/fleet/tests/telemetry/privacy.rs`
//! holds the fleet to it.

/// One face a detector found: a box in the pixels of the image it was given, and the
/// detector's confidence that it is a face.
#[derive(Clone, Copy, PartialEq)]
pub struct FaceBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
    /// Face probability, 0..1.
    pub score: f32,
}

impl std::fmt::Debug for FaceBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the coordinates: see the module's note.
        f.write_str("FaceBox(..)")
    }
}

impl FaceBox {
    /// Width times height (0 for a degenerate box).
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// The box's centre.
    pub fn centre(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_coordinate() {
        let face = FaceBox {
            x1: 693.4684,
            y1: 63.1257,
            x2: 779.2888,
            y2: 173.5434,
            score: 0.9983,
        };
        let printed = format!("{:?} {:#?}", face, vec![face, face]);
        assert!(!printed.chars().any(|c| c.is_ascii_digit()), "{printed}");
        assert_eq!(
            face.centre(),
            ((693.4684 + 779.2888) / 2.0, (63.1257 + 173.5434) / 2.0)
        );
        assert!(face.area() > 0.0);
    }
}
