//! Progress bars on stderr for anything that takes more than a second; hidden when stderr is
//! not a terminal or the output is JSON, so scripts see only the result.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ctx::Ctx;

fn visible(ctx: &Ctx) -> bool {
    !ctx.json()
}

fn target(ctx: &Ctx) -> ProgressDrawTarget {
    if visible(ctx) {
        // Hidden by indicatif itself when stderr is not a terminal.
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A spinner with a message, ticking on its own.
pub fn spinner(ctx: &Ctx, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target(ctx));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar counting up to `total` things of `unit`.
pub fn bar(ctx: &Ctx, total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target(ctx));
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{msg}} ({{elapsed}})");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
