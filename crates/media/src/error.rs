//! The crate's one error type: a kind callers match on plus an operator-facing message.

use clipfleet_proto::ErrorCode;

/// What went wrong, coarsely enough to decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaErrorKind {
    /// The bytes are not a format we take (or one this build left out, such as HEIC without the
    /// `heic` feature).
    UnsupportedFormat,
    /// Over a byte, dimension, pixel or allocation limit.
    TooLarge,
    /// A supported format that does not decode: truncated, corrupt, inconsistent.
    BadImage,
    /// Frames or parameters handed to an encoder or to [`crate::fit`] break the contract (empty,
    /// mixed sizes, odd dimensions, zero fps): a bug upstream, not the user's photo.
    InvalidInput,
    /// The encoder cannot run on this machine (no `ffmpeg` binary, or one without libx264).
    EncoderUnavailable,
    /// The encoder or muxer failed on valid input.
    EncoderFailed,
}

/// A media failure. The message never holds pixel data or user content, only sizes and causes.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct MediaError {
    /// What kind of failure.
    pub kind: MediaErrorKind,
    /// Operator-facing detail.
    pub message: String,
}

impl MediaError {
    pub(crate) fn new(kind: MediaErrorKind, message: impl Into<String>) -> Self {
        MediaError {
            kind,
            message: message.into(),
        }
    }

    /// The stable protocol code a job event or HTTP answer carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            MediaErrorKind::UnsupportedFormat => ErrorCode::UnsupportedFormat,
            MediaErrorKind::TooLarge => ErrorCode::TooLarge,
            MediaErrorKind::BadImage => ErrorCode::BadImage,
            // Another worker may have the binary: worth a retry elsewhere.
            MediaErrorKind::EncoderUnavailable => ErrorCode::Unavailable,
            MediaErrorKind::InvalidInput | MediaErrorKind::EncoderFailed => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_kinds_map_to_their_protocol_codes() {
        let code = |kind| MediaError::new(kind, "x").code();
        assert_eq!(
            code(MediaErrorKind::UnsupportedFormat),
            ErrorCode::UnsupportedFormat
        );
        assert_eq!(code(MediaErrorKind::TooLarge), ErrorCode::TooLarge);
        assert_eq!(code(MediaErrorKind::BadImage), ErrorCode::BadImage);
        assert_eq!(
            code(MediaErrorKind::EncoderUnavailable),
            ErrorCode::Unavailable
        );
        assert_eq!(code(MediaErrorKind::EncoderFailed), ErrorCode::Internal);
        assert!(!code(MediaErrorKind::BadImage).is_retryable());
    }
}
