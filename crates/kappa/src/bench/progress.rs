//! Progress bars on stderr (drawn only on a terminal).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::time::Duration;

pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
        }
    }

    /// A bar of `len` records for step `name`.
    pub fn records(&self, name: &str, len: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, {eta} left {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        bar
    }

    /// A bar of `secs` seconds for a step that runs for a set time.
    pub fn seconds(&self, name: &str, secs: f64, what: &str) -> ProgressBar {
        let bar = self
            .multi
            .add(ProgressBar::new((secs * 10.0).ceil() as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {elapsed} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        bar.set_message(what.to_string());
        bar
    }

    /// A spinner for work of unknown length.
    pub fn spinner(&self, name: &str, what: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} {spinner} {msg} {elapsed}")
                .expect("a valid template"),
        );
        bar.set_prefix(name.to_string());
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}
