//! Progress bars on stderr (indicatif), one per phase. They draw only on a terminal, so a run
//! piped into a file or CI keeps clean output; phase notes go to stderr either way.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps with a message on its right.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{spinner}} {what:<10} [{{bar:30}}] {{pos}}/{{len}} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A phase note on stderr, between bars (while a bar is drawn, use its `println`).
pub fn note(text: impl AsRef<str>) {
    eprintln!("{}", text.as_ref());
}
