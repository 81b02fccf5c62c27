//! The SVG plot of a run, written by hand (no plotting crate): throughput per second on top
//! (succeeded jobs as bars, offered submissions as a line), end-to-end latency p50 and p99 per
//! time bucket below, on a shared time axis; when the run mixed kinds (or ran session flows),
//! a line of per-kind numbers under the time axis.

use std::fmt::Write as _;

use crate::report::Report;
use crate::stats::Bucket;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 600.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// Top and height of each panel's plotting area.
const PANELS: [(f64, f64); 2] = [(50.0, 210.0), (330.0, 210.0)];
const SUCCEEDED: &str = "#4C78A8";
const OFFERED: &str = "#F58518";
const P50: &str = "#54A24B";
const P99: &str = "#E45756";

/// Picks one latency quantile of a bucket.
type Quantile = fn(&Bucket) -> Option<f64>;

/// An event to mark on the timeline (a fault of a chaos campaign): a line at `at_s`, or a band
/// to `until_s`, across both panels, labelled at the top.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Seconds from the start.
    pub at_s: f64,
    /// End of a lasting event.
    pub until_s: Option<f64>,
    /// Short label.
    pub label: String,
}

const MARK: &str = "#B279A2";

/// The plot of `report`'s timeline as an SVG document.
pub fn render(report: &Report) -> String {
    render_marked(report, &[])
}

/// The plot with `marks` drawn over both panels.
pub fn render_marked(report: &Report, marks: &[Mark]) -> String {
    let buckets = &report.timeline;
    let bucket_s = report.bucket_s.max(1e-3);
    let width_s = (buckets.len() as f64 * bucket_s).max(bucket_s);
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / width_s * plot_w;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "{} — {} · {} submissions, {} succeeded",
        report.target, report.load, report.counts.sent, report.counts.succeeded
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        escape(&title)
    );

    // Throughput panel.
    let rate = |n: u64| n as f64 / bucket_s;
    let rate_max = nice_max(
        buckets
            .iter()
            .map(|b| rate(b.succeeded).max(rate(b.submitted)))
            .fold(0.0, f64::max),
    );
    let (top, height) = PANELS[0];
    axes(&mut svg, top, height, rate_max, "jobs per second", width_s);
    let y = |v: f64| top + height - v / rate_max * height;
    let bar_w = (plot_w / buckets.len().max(1) as f64 * 0.8).max(1.0);
    for b in buckets {
        if b.succeeded > 0 {
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}" fill="{SUCCEEDED}"/>"#,
                x(b.start_s) + bar_w * 0.1,
                y(rate(b.succeeded)),
                top + height - y(rate(b.succeeded)),
            );
        }
    }
    let offered: Vec<Option<(f64, f64)>> = buckets
        .iter()
        .map(|b| Some((x(b.start_s + bucket_s / 2.0), y(rate(b.submitted)))))
        .collect();
    polyline(&mut svg, &offered, OFFERED);
    legend(
        &mut svg,
        top,
        &[(SUCCEEDED, "succeeded / s"), (OFFERED, "submitted / s")],
    );

    // Latency panel.
    let latency_max = nice_max(
        buckets
            .iter()
            .filter_map(|b| b.e2e_p99_ms.or(b.e2e_p50_ms))
            .fold(0.0, f64::max),
    );
    let (top, height) = PANELS[1];
    axes(
        &mut svg,
        top,
        height,
        latency_max,
        "end-to-end latency (ms)",
        width_s,
    );
    let y = |v: f64| top + height - v / latency_max * height;
    let series: [(Quantile, &str); 2] = [(|b| b.e2e_p50_ms, P50), (|b| b.e2e_p99_ms, P99)];
    for (pick, colour) in series {
        let points: Vec<Option<(f64, f64)>> = buckets
            .iter()
            .map(|b| pick(b).map(|v| (x(b.start_s + bucket_s / 2.0), y(v))))
            .collect();
        polyline(&mut svg, &points, colour);
    }
    legend(&mut svg, top, &[(P50, "p50"), (P99, "p99")]);
    draw_marks(&mut svg, marks, &x);
    let kinds = kind_columns(report);
    for (i, kind) in kinds.iter().enumerate() {
        // One column per kind, under the time axis.
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#444">{}</text>"##,
            LEFT + plot_w * i as f64 / kinds.len() as f64,
            HEIGHT - 27.0,
            escape(kind)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since start</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// The per-kind numbers (`image 12/12 0.81/s p50 1200 p99 2100 ms`), when the run had more
/// than one kind or session flows.
fn kind_columns(report: &Report) -> Vec<String> {
    if report.kinds.len() <= 1 && report.sessions.flows == 0 {
        return Vec::new();
    }
    report
        .kinds
        .iter()
        .map(|k| {
            format!(
                "{} {}/{} {:.2}/s p50 {:.0} p99 {:.0} ms",
                k.kind.replace('_', " "),
                k.succeeded,
                k.submissions,
                k.succeeded_per_s,
                k.latency.p50_ms,
                k.latency.p99_ms
            )
        })
        .collect()
}

/// Each mark as a line (or a translucent band) over both panels, its label staggered on four
/// rows above the top panel so close marks stay readable.
fn draw_marks(svg: &mut String, marks: &[Mark], x: &dyn Fn(f64) -> f64) {
    let (top, _) = PANELS[0];
    let (bottom_top, bottom_height) = PANELS[1];
    let bottom = bottom_top + bottom_height;
    for (i, mark) in marks.iter().enumerate() {
        let x0 = x(mark.at_s);
        match mark.until_s {
            Some(until) if until > mark.at_s => {
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{MARK}" fill-opacity="0.18"/>"#,
                    (x(until) - x0).max(1.0),
                    bottom - top
                );
            }
            _ => {
                let _ = writeln!(
                    svg,
                    r#"<line x1="{x0:.1}" y1="{top:.1}" x2="{x0:.1}" y2="{bottom:.1}" stroke="{MARK}" stroke-dasharray="3,3"/>"#
                );
            }
        }
        let row = (i % 4) as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{x0:.1}" y="{:.1}" font-size="9" fill="{MARK}">{}</text>"#,
            top + 10.0 + row * 10.0,
            escape(&mark.label)
        );
    }
}

/// Frame, horizontal grid with labels, time ticks and the axis title of one panel.
fn axes(svg: &mut String, top: f64, height: f64, max: f64, label: &str, width_s: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{height}" fill="none" stroke="#888"/>"##
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + height - height * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            short(v)
        );
    }
    let step = nice_max(width_s / 8.0);
    let mut t = 0.0;
    while t <= width_s + 1e-9 {
        let x = LEFT + t / width_s * plot_w;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + height,
            top + height + 4.0,
            top + height + 16.0,
            short(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(label)
    );
}

/// A line through the points, broken where a bucket has no value.
fn polyline(svg: &mut String, points: &[Option<(f64, f64)>], colour: &str) {
    let mut d = String::new();
    let mut pen_down = false;
    for point in points {
        match point {
            Some((x, y)) => {
                let _ = write!(d, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !d.is_empty() {
        let _ = writeln!(
            svg,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            d.trim_end()
        );
    }
}

fn legend(svg: &mut String, top: f64, entries: &[(&str, &str)]) {
    let mut x = WIDTH - RIGHT - 240.0;
    for (colour, name) in entries {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            top - 19.0,
            x + 16.0,
            top - 8.0,
            escape(name)
        );
        x += 120.0;
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing to plot).
fn nice_max(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// An axis label: no trailing zeros.
fn short(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(0.03), 0.05);
        assert_eq!(short(2.50), "2.5");
        assert_eq!(short(200.0), "200");
    }

    #[test]
    fn broken_lines_restart() {
        let mut svg = String::new();
        polyline(
            &mut svg,
            &[Some((1.0, 2.0)), None, Some((3.0, 4.0)), Some((5.0, 6.0))],
            "red",
        );
        assert!(svg.contains(r#"d="M1.0,2.0 M3.0,4.0 L5.0,6.0""#), "{svg}");
    }
}
