//! `Range: bytes=…` for video downloads (RFC 9110 §14): one range is served as `206`, a range
//! outside the video as `416`; several ranges, or a header we do not understand, get the whole
//! video (which the RFC allows).

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// The whole body (no header, several ranges, or one we ignore).
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Nothing of the body can be served.
    Unsatisfiable,
}

pub(crate) fn parse(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if len > 0 => RangeRequest::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        // bytes=S-: from S to the end.
        (false, true) => match number(first) {
            Some(start) if start < len => RangeRequest::Partial {
                start,
                end: len - 1,
            },
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end && start < len => RangeRequest::Partial {
                start,
                end: end.min(len - 1),
            },
            (Some(start), Some(end)) if start <= end => RangeRequest::Unsatisfiable,
            _ => RangeRequest::Full,
        },
        (true, true) => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn ranges_resolve_against_the_length() {
        let cases = [
            (None, Full),
            (Some("bytes=0-99"), Partial { start: 0, end: 99 }),
            (
                Some("bytes=100-"),
                Partial {
                    start: 100,
                    end: 999,
                },
            ),
            (
                Some("bytes=-10"),
                Partial {
                    start: 990,
                    end: 999,
                },
            ),
            (Some("bytes=-5000"), Partial { start: 0, end: 999 }),
            (
                Some("bytes=900-5000"),
                Partial {
                    start: 900,
                    end: 999,
                },
            ),
            (Some("bytes=1000-"), Unsatisfiable),
            (Some("bytes=1000-1001"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=5-1"), Full),
            (Some("bytes=0-1,5-6"), Full),
            (Some("items=0-1"), Full),
            (Some("bytes=x-y"), Full),
        ];
        for (header, expected) in cases {
            assert_eq!(parse(header, 1000), expected, "{header:?}");
        }
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
