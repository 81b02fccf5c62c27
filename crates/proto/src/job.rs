//! The job message: what ingest publishes and a worker runs.

use serde::{Deserialize, Serialize};

use crate::codec::{Invalid, Message};
use crate::{AccountId, JobId, PhotoId, PoolName, SessionId, Timestamp};

open_enum! {
    /// Scheduling class: paid jobs overtake free ones without starving them.
    pub enum Priority {
        /// The default class.
        Free = "free",
        /// Served first.
        Paid = "paid",
    }
}

open_enum! {
    /// The camera motion a motion model renders. A preset this reader does not know decodes as
    /// `Unknown`; a worker then fails the job with `invalid_params` rather than guessing.
    pub enum Motion {
        /// Push in towards the centre.
        ZoomIn = "zoom_in",
        /// Pull back from the centre.
        ZoomOut = "zoom_out",
        /// Pan towards the left edge.
        PanLeft = "pan_left",
        /// Pan towards the right edge.
        PanRight = "pan_right",
        /// Pan upwards.
        PanUp = "pan_up",
        /// Pan downwards.
        PanDown = "pan_down",
        /// Foreground and background move at different speeds.
        Parallax = "parallax",
    }
}

open_enum! {
    /// The shape of the video: the photo's own (`auto`, the nearest aspect bucket the model
    /// renders) or a named bucket, rendered at the model's pixel budget (its manifest input
    /// size's area). A reader that does not know the value fails the job `invalid_params`.
    pub enum Aspect {
        /// The bucket nearest the photo's aspect, after its EXIF orientation.
        Auto = "auto",
        /// Portrait, phone screen.
        Portrait9x16 = "9:16",
        /// Portrait, classic photo.
        Portrait3x4 = "3:4",
        /// Square.
        Square = "1:1",
        /// Landscape, classic photo.
        Landscape4x3 = "4:3",
        /// Landscape, wide screen.
        Landscape16x9 = "16:9",
    }
}

impl Aspect {
    fn is_auto(&self) -> bool {
        *self == Aspect::Auto
    }
}

// By hand: the enum is written by `open_enum!`, whose variants take no `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for Aspect {
    fn default() -> Self {
        Aspect::Auto
    }
}

open_enum! {
    /// What a job makes of its photo. Absent on the wire means `video`, and is how `video` is
    /// written (schema version 1). A job of any other kind is written at the kind's schema
    /// version ([`JobKind::schema_version`]): a reader of version 1 alone would run it as a
    /// video, so it must refuse it instead (`unsupported version`, dead-lettered `undecodable`).
    pub enum JobKind {
        /// Photo in, MP4 out: image-to-video.
        Video = "video",
        /// Photo in, still image out: image-to-image (portraits, beautification).
        Image = "image",
        /// A session's photos in, the session's personalised adapter out (schema version 3):
        /// gradient steps on a small adapter of the named model, stored sealed under the
        /// session's prefix. Needs `session` with its photos.
        Personalize = "personalize",
    }
}

impl JobKind {
    fn is_video(&self) -> bool {
        *self == JobKind::Video
    }

    /// The schema version a job of this kind is written at: 1 for `video`, 2 for `image`, 3
    /// for `personalize` (and for any job carrying a `session`, [`GenerateJob::schema_version`]).
    pub fn schema_version(self) -> u32 {
        match self {
            JobKind::Video => 1,
            JobKind::Image => 2,
            _ => 3,
        }
    }
}

// By hand, as `Aspect`'s.
#[allow(clippy::derivable_impls)]
impl Default for JobKind {
    fn default() -> Self {
        JobKind::Video
    }
}

/// A SHA-256 digest as 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Validates 64 lowercase hex characters.
    pub fn new(text: impl Into<String>) -> Result<Self, Invalid> {
        let text = text.into();
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Sha256Hex(text))
        } else {
            Err(Invalid("sha256 must be 64 lowercase hex characters".into()))
        }
    }

    /// From the 32 digest bytes.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        use std::fmt::Write;
        let mut text = String::with_capacity(64);
        for byte in digest {
            let _ = write!(text, "{byte:02x}");
        }
        Sha256Hex(text)
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = Invalid;
    fn try_from(text: String) -> Result<Self, Invalid> {
        Sha256Hex::new(text)
    }
}

impl From<Sha256Hex> for String {
    fn from(hex: Sha256Hex) -> String {
        hex.0
    }
}

/// Which model runs the job: a name and version from the worker's model manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// Manifest name, e.g. `motion`.
    pub name: String,
    /// Manifest version, e.g. `1`.
    pub version: String,
}

/// Where the job's photo is: a reference into the object store, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    /// Object key (`inputs/<account>/<job>`), sealed at rest.
    pub key: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Digest of the plaintext, checked by the worker after unsealing.
    pub sha256: Sha256Hex,
    /// Media type sniffed by ingest (`image/jpeg`, `image/png`, `image/webp`, `image/heic`).
    pub content_type: String,
}

/// Most photos one session holds (and one `personalize` job trains on).
pub const MAX_SESSION_PHOTOS: usize = 16;

/// One photo of a session, sealed at rest under `sessions/<account>/<session>/photos/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPhoto {
    /// Names the object.
    pub id: PhotoId,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Digest of the plaintext, checked by the worker after unsealing.
    pub sha256: Sha256Hex,
    /// Media type sniffed by ingest.
    pub content_type: String,
}

/// The personalisation session a job belongs to (schema version 3). Its keys derive from the
/// job's account and this id, so a job can reach only its own session's objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session.
    pub id: SessionId,
    /// When the session ends by its TTL: no adapter is written at or after this instant.
    pub expires_at: Timestamp,
    /// The photos a `personalize` job trains on (1..=[`MAX_SESSION_PHOTOS`]); empty for a
    /// job that uses the session's adapter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<SessionPhoto>,
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Frames in the video.
    pub frames: u16,
    /// Frames per second of the video.
    pub fps: u16,
    /// Output width in pixels: the model's input size; with an `aspect`, the pixel budget the
    /// bucket's size is taken at.
    pub width: u16,
    /// Output height in pixels (as `width`).
    pub height: u16,
    /// Seed for any randomness in the model, so a rerun renders the same video.
    pub seed: u64,
    /// Camera motion preset.
    pub motion: Motion,
    /// The video's shape. Absent on the wire means `auto` (and is how `auto` is written, so a
    /// message of an older writer reads the same).
    #[serde(default, skip_serializing_if = "Aspect::is_auto")]
    pub aspect: Aspect,
}

/// A request to turn one photo into one video, or (by `kind`) one still image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateJob {
    /// Schema version ([`crate::SCHEMA_VERSION`] when written by this crate).
    pub v: u32,
    /// Server-made id; also names the input and output objects.
    pub job_id: JobId,
    /// Whose photo it is (opaque).
    pub account_id: AccountId,
    /// The pool whose queue carries the job.
    pub pool: PoolName,
    /// The model to run.
    pub model: ModelRef,
    /// The photo (a `personalize` job: its session's first photo; it trains on
    /// `session.photos`).
    pub input: InputRef,
    /// Rendering parameters.
    pub params: Params,
    /// What it makes: a video, or (schema version 2) a still image. Absent means `video`.
    #[serde(default, skip_serializing_if = "JobKind::is_video")]
    pub kind: JobKind,
    /// The personalisation session (schema version 3): a `personalize` job trains the session's
    /// adapter; any other job with a session is rendered with it. Absent: no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRef>,
    /// Scheduling class.
    pub priority: Priority,
    /// When ingest accepted the job.
    pub submitted_at: Timestamp,
    /// After this instant the job fails `expired` instead of running.
    pub deadline: Timestamp,
    /// W3C `traceparent` of the submitting request, so one trace spans queue and worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Longest object key a job may reference, in bytes.
const MAX_KEY_BYTES: usize = 1024;
/// Longest model name, version or content type, in bytes.
const MAX_LABEL_BYTES: usize = 128;
/// Longest `traceparent` accepted (the W3C format is 55 characters).
const MAX_TRACEPARENT_BYTES: usize = 128;

impl GenerateJob {
    /// The schema version this job is written at: its kind's, and 3 when it carries a session
    /// (a reader of 2 would ignore the session and render without its adapter).
    pub fn schema_version(&self) -> u32 {
        let session = if self.session.is_some() { 3 } else { 1 };
        self.kind.schema_version().max(session)
    }
}

impl Message for GenerateJob {
    const KIND: &'static str = "generate_job";

    fn version(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), Invalid> {
        let label = |what: &str, text: &str| -> Result<(), Invalid> {
            if text.is_empty() || text.len() > MAX_LABEL_BYTES {
                return Err(Invalid(format!(
                    "{what} must be 1..={MAX_LABEL_BYTES} bytes"
                )));
            }
            Ok(())
        };
        label("model.name", &self.model.name)?;
        label("model.version", &self.model.version)?;
        label("input.content_type", &self.input.content_type)?;
        if self.input.key.is_empty() || self.input.key.len() > MAX_KEY_BYTES {
            return Err(Invalid(format!(
                "input.key must be 1..={MAX_KEY_BYTES} bytes"
            )));
        }
        if self.kind == JobKind::Unknown {
            return Err(Invalid("kind is not one this reader serves".into()));
        }
        if self.v < self.kind.schema_version() {
            return Err(Invalid(format!(
                "a {} job is schema version {} or later",
                self.kind,
                self.kind.schema_version()
            )));
        }
        if self.v < self.schema_version() {
            return Err(Invalid(format!(
                "a job with a session is schema version {} or later",
                self.schema_version()
            )));
        }
        match (&self.session, self.kind) {
            (None, JobKind::Personalize) => {
                return Err(Invalid("a personalize job needs its session".into()));
            }
            (Some(session), JobKind::Personalize)
                if session.photos.is_empty() || session.photos.len() > MAX_SESSION_PHOTOS =>
            {
                return Err(Invalid(format!(
                    "a personalize job trains on 1..={MAX_SESSION_PHOTOS} photos"
                )));
            }
            (Some(session), kind) if kind != JobKind::Personalize && !session.photos.is_empty() => {
                return Err(Invalid(
                    "only a personalize job lists session photos".into(),
                ));
            }
            (Some(session), _) => {
                // The session's adapter is stored under the model's name.
                let segment_ok = self
                    .model
                    .name
                    .starts_with(|c: char| c.is_ascii_alphanumeric())
                    && self
                        .model
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !segment_ok {
                    return Err(Invalid(
                        "a session's job names its model in letters, digits, '-', '_' and '.'"
                            .into(),
                    ));
                }
                for photo in &session.photos {
                    label("session.photos.content_type", &photo.content_type)?;
                }
            }
            (None, _) => {}
        }
        let p = &self.params;
        if p.frames == 0 || p.fps == 0 || p.width == 0 || p.height == 0 {
            return Err(Invalid(
                "params.frames, fps, width and height must be positive".into(),
            ));
        }
        if self
            .trace
            .as_ref()
            .is_some_and(|t| t.len() > MAX_TRACEPARENT_BYTES)
        {
            return Err(Invalid(format!(
                "trace must be at most {MAX_TRACEPARENT_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_checks_shape() {
        assert!(Sha256Hex::new("ab".repeat(32)).is_ok());
        assert!(Sha256Hex::new("AB".repeat(32)).is_err());
        assert!(Sha256Hex::new("ab".repeat(31)).is_err());
        assert_eq!(
            Sha256Hex::from_digest(&[0xab; 32]).as_str(),
            "ab".repeat(32)
        );
    }

    #[test]
    fn unknown_motion_is_kept_apart() {
        assert_eq!(Motion::parse("dolly_zoom"), Motion::Unknown);
        assert_eq!(Motion::parse("parallax"), Motion::Parallax);
    }
}
