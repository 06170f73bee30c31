//! Progress bars for transfers, on stderr and only on a terminal, so scripts and tests see
//! clean output.

use std::io::IsTerminal;
use std::sync::Arc;

use cinder_client::media::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar that finishes (and clears) when dropped.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar for `total` bytes; nothing is drawn unless stderr is a terminal.
    pub fn new(what: &'static str, total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what);
        Self(Some(bar))
    }

    /// The callback the client library reports progress to.
    pub fn reporter(&self) -> Progress {
        let bar = self.0.clone();
        Arc::new(move |done| {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        })
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A size for people: 1.5 MiB, 640 B.
pub fn size(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}
