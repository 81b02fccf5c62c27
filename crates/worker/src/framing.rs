//! Framing a photo on its faces: a model whose manifest entry names a `framing` detector gets
//! its photo cropped around the faces found, and the camera's focus (the `params` the model
//! moves about) on them, instead of the middle.
//!
//! The boxes live only here, in the job's memory: they are not logged, recorded in a span,
//! put in an event, stored or returned; what leaves is a crop and a focus point of the frame
//! the model renders. [`FaceBox`] prints no coordinate even by `Debug`.

use clipfleet_infer::FaceBox;

/// Faces smaller than this share of the largest face's area are background: they do not move
/// the frame.
const BACKGROUND_SHARE: f32 = 0.25;

/// The point to frame on, in the pixels of the image the detector saw: the centre of the box
/// around every face that is not background. `None` without faces.
pub(crate) fn focus(faces: &[FaceBox]) -> Option<(f64, f64)> {
    let largest = faces.iter().map(FaceBox::area).fold(0.0f32, f32::max);
    if largest <= 0.0 {
        return None;
    }
    let main = faces
        .iter()
        .filter(|f| f.area() >= largest * BACKGROUND_SHARE);
    let (x1, y1, x2, y2) = main.fold(
        (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
        |(x1, y1, x2, y2), f| (x1.min(f.x1), y1.min(f.y1), x2.max(f.x2), y2.max(f.y2)),
    );
    Some((
        (f64::from(x1) + f64::from(x2)) / 2.0,
        (f64::from(y1) + f64::from(y2)) / 2.0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, side: f32) -> FaceBox {
        FaceBox {
            x1,
            y1,
            x2: x1 + side,
            y2: y1 + side,
            score: 0.99,
        }
    }

    #[test]
    fn frames_on_the_faces_that_matter() {
        assert_eq!(focus(&[]), None);
        assert_eq!(focus(&[face(100.0, 50.0, 40.0)]), Some((120.0, 70.0)));
        // Two people: the middle of both; a small face far off in the background is ignored.
        let group = [
            face(100.0, 100.0, 60.0),
            face(300.0, 120.0, 50.0),
            face(900.0, 10.0, 10.0),
        ];
        assert_eq!(focus(&group), Some((225.0, 135.0)));
        // A degenerate box is no face.
        assert_eq!(focus(&[face(10.0, 10.0, 0.0)]), None);
    }
}
