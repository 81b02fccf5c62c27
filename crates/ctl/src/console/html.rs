//! HTML by hand: escaping, the page frame, small table helpers. Every value that reaches a page
//! goes through [`esc`]; the frame carries no inline script or style (the Content Security
//! Policy forbids both), only `/static/console.js` and `/static/console.css`.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `text` safe inside an element or a double-quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who a page is drawn for: the navigation shows operator links only to an operator.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The session's CSRF token (forms carry it back).
    pub csrf: String,
    /// Logged in as an operator.
    pub operator: bool,
    /// The try-it page is served.
    pub try_it: bool,
}

impl Viewer {
    /// The hidden input every form carries.
    pub fn csrf_input(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(&self.csrf)
        )
    }
}

/// A whole page.
pub fn page(status: StatusCode, title: &str, viewer: &Viewer, body: &str) -> Response {
    let mut nav = String::new();
    if viewer.operator {
        nav.push_str(
            "<a href=\"/\">Overview</a><a href=\"/dead\">Dead letters</a><a href=\"/janitor\">Janitor</a>",
        );
    }
    if viewer.try_it {
        nav.push_str("<a href=\"/try\">Try it</a>");
    }
    if viewer.operator {
        let _ = write!(
            nav,
            "<form class=\"inline\" method=\"post\" action=\"/logout\">{}<button>Log out</button></form>",
            viewer.csrf_input()
        );
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\">\
         <title>{title} · clipfleet</title>\
         <link rel=\"stylesheet\" href=\"/static/console.css\">\
         <script src=\"/static/console.js\" defer></script></head>\
         <body><header><strong>clipfleet</strong><nav>{nav}</nav></header>\
         <main><h1>{title}</h1>{body}</main></body></html>\n",
        csrf = esc(&viewer.csrf),
        title = esc(title),
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A page that says what went wrong and where to go back to.
pub fn message(status: StatusCode, viewer: &Viewer, title: &str, text: &str) -> Response {
    let class = if status.is_success() { "ok" } else { "error" };
    page(
        status,
        title,
        viewer,
        &format!(
            "<p class=\"{class}\" id=\"message\">{}</p><p><a href=\"/\">Back to the overview</a></p>",
            esc(text)
        ),
    )
}

/// Unix ms as an ISO-8601 UTC instant (`2026-12-03T13:24:47.123Z`).
pub fn instant(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A duration in ms for people.
pub fn took(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{:.1} min", ms as f64 / 60_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn instants_are_utc_calendar_dates() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_780_000_000_123), "2026-05-28T20:26:40.123Z");
        assert_eq!(instant(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
