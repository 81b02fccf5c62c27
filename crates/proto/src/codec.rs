//! MessagePack encoding with named fields, and decoding that never trusts its input: a size
//! bound before parsing, typed errors for garbage, a schema-version check and per-message
//! validation after it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, MAX_SUPPORTED_VERSION, MIN_SUPPORTED_VERSION};

/// Largest message accepted. Messages carry references, never media, so a few KiB is typical;
/// the bound stops a hostile or broken producer from making a consumer parse megabytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A message that decoded but breaks a rule of the protocol (a range, a length, a format).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A top-level message type of the protocol.
pub trait Message: Serialize + DeserializeOwned {
    /// Name used in errors and in the spec (`generate_job`, `event_batch`, `control`).
    const KIND: &'static str;

    /// The schema version the message carries in `v`.
    fn version(&self) -> u32;

    /// Rules beyond the types: lengths, ranges, formats.
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Why bytes are not a message. Every variant maps to [`ErrorCode::Undecodable`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Nothing to decode.
    #[error("empty {kind} message")]
    Empty {
        /// Expected message kind.
        kind: &'static str,
    },
    /// Over [`MAX_MESSAGE_BYTES`]; not parsed at all.
    #[error("{kind} message is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Expected message kind.
        kind: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not MessagePack, or not the shape of this message (missing field, wrong type, trailing
    /// bytes).
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// Expected message kind.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A schema version this reader cannot read.
    #[error("{kind} schema version {got} is not supported (this reader reads {min}..={max})")]
    UnsupportedVersion {
        /// Expected message kind.
        kind: &'static str,
        /// The message's `v`.
        got: u32,
        /// Oldest version read.
        min: u32,
        /// Newest version read.
        max: u32,
    },
    /// Well-formed but against the protocol's rules.
    #[error("invalid {kind} message: {source}")]
    Invalid {
        /// Expected message kind.
        kind: &'static str,
        /// The broken rule.
        source: Invalid,
    },
}

impl DecodeError {
    /// The stable code for dead-lettering and reports.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Undecodable
    }
}

/// A message that could not be encoded (only possible for a value no decoder could produce).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {kind} message: {reason}")]
pub struct EncodeError {
    /// The message kind.
    pub kind: &'static str,
    /// What the encoder said.
    pub reason: String,
}

/// Encodes `message` as a MessagePack map with named fields.
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, EncodeError> {
    let bytes = rmp_serde::to_vec_named(message).map_err(|err| EncodeError {
        kind: M::KIND,
        reason: err.to_string(),
    })?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(EncodeError {
            kind: M::KIND,
            reason: format!(
                "{} bytes is more than the {MAX_MESSAGE_BYTES} allowed",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// Decodes one message from exactly `bytes`: size-bounded, version-checked and validated.
/// Fields this reader does not know are ignored.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let kind = M::KIND;
    if bytes.is_empty() {
        return Err(DecodeError::Empty { kind });
    }
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            kind,
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    check_nesting(bytes).map_err(|reason| DecodeError::Malformed { kind, reason })?;
    let message: M = match parse_exact(bytes) {
        Ok(message) => message,
        Err(reason) => {
            // A newer major version may have reshaped the message: say so rather than "malformed".
            if let Ok(VersionProbe { v: Some(got) }) = parse_exact::<VersionProbe>(bytes)
                && !supported(got)
            {
                return Err(unsupported(kind, got));
            }
            return Err(DecodeError::Malformed { kind, reason });
        }
    };
    if !supported(message.version()) {
        return Err(unsupported(kind, message.version()));
    }
    message
        .validate()
        .map_err(|source| DecodeError::Invalid { kind, source })?;
    Ok(message)
}

/// Deepest nesting of maps and arrays accepted. Protocol messages nest four levels at most; the
/// bound leaves room for newer writers while keeping the recursive parser's stack shallow.
pub const MAX_NESTING: usize = 32;

/// Walks the MessagePack structure without recursion and refuses nesting deeper than
/// [`MAX_NESTING`] or a value cut short. rmp-serde recurses once per level (up to 1024), which
/// overflows a thread's stack long before its own limit on hostile input.
fn check_nesting(bytes: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    // Items still to read in each open container (maps count keys and values); the bottom entry
    // is the single top-level value.
    let mut open: Vec<u64> = vec![1];
    let take = |pos: &mut usize, n: usize| -> Result<u64, String> {
        let end = pos.checked_add(n).filter(|end| *end <= bytes.len());
        let end = end.ok_or_else(|| "message cut short".to_string())?;
        let value = bytes[*pos..end]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        *pos = end;
        Ok(value)
    };
    while let Some(remaining) = open.last_mut() {
        if *remaining == 0 {
            open.pop();
            continue;
        }
        *remaining -= 1;
        let marker = take(&mut pos, 1)? as u8;
        let (skip, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, u64::from(marker & 0x0f) * 2),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err("byte 0xc1 is never valid MessagePack".into()),
            0xc4 | 0xd9 => (take(&mut pos, 1)?, 0),
            0xc5 | 0xda => (take(&mut pos, 2)?, 0),
            0xc6 | 0xdb => (take(&mut pos, 4)?, 0),
            0xc7 => (take(&mut pos, 1)? + 1, 0),
            0xc8 => (take(&mut pos, 2)? + 1, 0),
            0xc9 => (take(&mut pos, 4)? + 1, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, take(&mut pos, 2)?),
            0xdd => (0, take(&mut pos, 4)?),
            0xde => (0, take(&mut pos, 2)? * 2),
            0xdf => (0, take(&mut pos, 4)? * 2),
        };
        let skip = usize::try_from(skip).map_err(|_| "length overflows".to_string())?;
        if pos.checked_add(skip).is_none_or(|end| end > bytes.len()) {
            return Err("message cut short".into());
        }
        pos += skip;
        if children > 0 {
            if open.len() > MAX_NESTING {
                return Err(format!("nested deeper than {MAX_NESTING} levels"));
            }
            open.push(children);
        }
    }
    Ok(())
}

/// Reads only `v`, ignoring everything else.
#[derive(Deserialize)]
struct VersionProbe {
    v: Option<u32>,
}

fn supported(version: u32) -> bool {
    (MIN_SUPPORTED_VERSION..=MAX_SUPPORTED_VERSION).contains(&version)
}

fn unsupported(kind: &'static str, got: u32) -> DecodeError {
    DecodeError::UnsupportedVersion {
        kind,
        got,
        min: MIN_SUPPORTED_VERSION,
        max: MAX_SUPPORTED_VERSION,
    }
}

/// Parses one value and refuses trailing bytes. Through a `Cursor`, rmp-serde reads a string or
/// binary with `take(len)`, so a forged length cannot make it allocate more than the input holds.
fn parse_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut deserializer = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value =
        T::deserialize(&mut deserializer).map_err(|err| without_quoted_values(&err.to_string()))?;
    let consumed = deserializer.position();
    if consumed != bytes.len() as u64 {
        return Err(format!("{} trailing bytes", bytes.len() as u64 - consumed));
    }
    Ok(value)
}

/// serde's messages quote the offending value (`invalid type: string "…"`). A field's value
/// may be personal data and decode errors are logged, so quoted text is elided.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in message.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    out.push_str("…\"");
                    quoted = false;
                }
                _ => {}
            }
        } else {
            out.push(c);
            quoted = c == '"';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_never_reach_error_messages() {
        assert_eq!(
            without_quoted_values(r#"invalid type: string "ada@example.com", expected u64"#),
            r#"invalid type: string "…", expected u64"#
        );
        assert_eq!(
            without_quoted_values(r#"unknown variant "a\"b", expected `free`"#),
            r#"unknown variant "…", expected `free`"#
        );
        let mut job = rmpv::Value::Map(vec![(
            rmpv::Value::from("job_id"),
            rmpv::Value::from("ada@example.com"),
        )]);
        if let rmpv::Value::Map(fields) = &mut job {
            fields.push((rmpv::Value::from("v"), rmpv::Value::from("lovelace")));
        }
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &job).expect("encode");
        let err = decode::<crate::GenerateJob>(&bytes).expect_err("garbage");
        let text = err.to_string();
        assert!(
            !text.contains("ada@") && !text.contains("lovelace"),
            "{text}"
        );
    }

    fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x91; depth];
        bytes.push(0x01);
        bytes
    }

    #[test]
    fn nesting_up_to_the_bound_passes() {
        assert_eq!(check_nesting(&nested_arrays(MAX_NESTING)), Ok(()));
        assert!(check_nesting(&nested_arrays(MAX_NESTING + 1)).is_err());
    }

    #[test]
    fn cut_short_values_are_caught() {
        assert!(check_nesting(&[0x92, 0x01]).is_err());
        assert!(check_nesting(&[0xa5, b'a', b'b']).is_err());
        assert!(check_nesting(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'x']).is_err());
        assert_eq!(
            check_nesting(&[0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xc0]),
            Ok(())
        );
    }
}
