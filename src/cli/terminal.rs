//! What a person sees on stderr: log lines and, on a terminal, a progress
//! bar that never overwrites them.
//!
//! - Colours only when stderr is a terminal and `NO_COLOR` is unset: cron
//!   mail and journald get plain text.
//! - While a bar is shown, each log line is written with the bar suspended,
//!   so the two never share a line.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::scan::ScanProgress;

/// The bar currently on screen, if any.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up `tracing` on stderr (`RUST_LOG` filters).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Ballista's processes say what they do at info; a Ballista task's
        // slice of the scan makes DataFusion warn about its partitioning.
        "fap_warehouse=info,ballista_scheduler=info,ballista_executor=info,\
             datafusion_datasource::file_scan_config=error,warn"
            .into()
    });
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_writer(|| LogWriter)
        .with_ansi(color)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => logs.json().with_current_span(true).try_init(),
        LogFormat::Text => logs.try_init(),
    };
}

/// Writes log lines to stderr around the progress bar.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A progress bar for a scan, updated from the engine's counters (logs read
/// out of the total, MB/s, ETA); nothing when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn scan(what: &str, counters: Arc<ScanProgress>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} {pos}/{len} logs [{bar:30}] {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        if let Ok(mut slot) = BAR.lock() {
            *slot = Some(bar.clone());
        }
        let shown = bar.clone();
        let started = std::time::Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                let (files, bytes) = counters.get();
                let (total, _) = counters.total();
                if total > 0 {
                    shown.set_length(total);
                }
                shown.set_position(files);
                let seconds = started.elapsed().as_secs_f64().max(1e-3);
                shown.set_message(format!("{:.0} MB/s", bytes as f64 / 1e6 / seconds));
                shown.tick();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    /// A spinner with a message.
    pub fn spinner(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::new_spinner().with_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut slot) = BAR.lock() {
            *slot = Some(bar.clone());
        }
        Self {
            bar: Some(bar),
            ticker: None,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut slot) = BAR.lock() {
                *slot = None;
            }
        }
    }
}
