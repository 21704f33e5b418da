//! Progress on stderr, in the form the user asked: a bar on a terminal (file name, phase,
//! percentage), plain lines for CI logs (no escape codes, at most one every few seconds),
//! JSON lines for programs, or nothing.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use vdconv::convert::{Phase, Progress};

use crate::cli::ProgressArg;

/// Plain lines at most this often.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// JSON lines at most this often (and always the last one).
const JSON_EVERY: Duration = Duration::from_millis(500);

pub enum Reporter {
    Hidden,
    Bar {
        bar: ProgressBar,
        phase: Option<Phase>,
        name: String,
    },
    Lines {
        name: String,
        last: Option<Instant>,
        phase: Option<Phase>,
    },
    Json {
        name: String,
        last: Option<Instant>,
        last_done: u64,
    },
}

#[derive(Serialize)]
struct JsonLine<'a> {
    schema_version: u32,
    event: &'static str,
    phase: Phase,
    file: &'a str,
    done: u64,
    total: u64,
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Convert => "converting",
        Phase::Verify => "verifying",
        Phase::Compare => "comparing",
    }
}

impl Reporter {
    /// `name` is the file shown (the source being read).
    pub fn new(mode: ProgressArg, quiet: bool, name: &str) -> Self {
        let name = name.to_string();
        let terminal = std::io::stderr().is_terminal();
        match mode {
            ProgressArg::Never => Reporter::Hidden,
            ProgressArg::Auto if quiet || !terminal => Reporter::Hidden,
            ProgressArg::Json => Reporter::Json {
                name,
                last: None,
                last_done: u64::MAX,
            },
            ProgressArg::Always if !terminal => Reporter::Lines {
                name,
                last: None,
                phase: None,
            },
            ProgressArg::Auto | ProgressArg::Always => {
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} {bar:30} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template"),
                );
                Reporter::Bar {
                    bar,
                    phase: None,
                    name,
                }
            }
        }
    }

    pub fn update(&mut self, p: Progress) {
        match self {
            Reporter::Hidden => {}
            Reporter::Bar { bar, phase, name } => {
                if *phase != Some(p.phase) {
                    *phase = Some(p.phase);
                    bar.set_length(p.total);
                    bar.reset();
                    bar.set_message(format!("{} {name}", phase_name(p.phase)));
                }
                bar.set_position(p.done);
            }
            Reporter::Lines { name, last, phase } => {
                let now = Instant::now();
                let new_phase = *phase != Some(p.phase);
                let due = last.is_none_or(|t| now.duration_since(t) >= LINE_EVERY);
                if new_phase || due || p.done == p.total {
                    *phase = Some(p.phase);
                    *last = Some(now);
                    let pct = (p.done as f64 * 100.0 / p.total.max(1) as f64).min(100.0);
                    let _ = writeln!(
                        std::io::stderr(),
                        "vdconv: {} {name}: {pct:.0}% ({} of {} bytes)",
                        phase_name(p.phase),
                        p.done,
                        p.total
                    );
                }
            }
            Reporter::Json {
                name,
                last,
                last_done,
            } => {
                let now = Instant::now();
                let due = last.is_none_or(|t| now.duration_since(t) >= JSON_EVERY);
                if (due || p.done == p.total) && p.done != *last_done {
                    *last = Some(now);
                    *last_done = p.done;
                    let line = JsonLine {
                        schema_version: vdconv::report::SCHEMA_VERSION,
                        event: "progress",
                        phase: p.phase,
                        file: name,
                        done: p.done,
                        total: p.total,
                    };
                    if let Ok(text) = serde_json::to_string(&line) {
                        let _ = writeln!(std::io::stderr(), "{text}");
                    }
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Reporter::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}
