//! Progress on stderr while a command waits on the network: a spinner with the current step
//! on a terminal (indicatif), a line every few seconds otherwise (logs, CI), so that a server
//! that never answers is never silence.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Not a tty: nothing is printed for steps quicker than this.
const FIRST_LINE: Duration = Duration::from_secs(2);
/// Not a tty: then a line this often.
const EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Step {
    message: String,
    done: u64,
    total: u64,
}

pub(super) struct Progress {
    step: Arc<Mutex<Step>>,
    bar: Option<ProgressBar>,
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Progress {
    /// `what` names the steps (zones, say) in the periodic lines.
    #[allow(clippy::expect_used, reason = "a valid template")]
    pub(super) fn start(what: &'static str) -> Self {
        let step = Arc::new(Mutex::new(Step::default()));
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos}/{len} {msg} ({elapsed})")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            return Progress {
                step,
                bar: Some(bar),
                ticker: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = step.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut wait = FIRST_LINE;
            // A message or a dropped sender both end it.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                let s = shared.lock().unwrap_or_else(|e| e.into_inner());
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "mta-stsd: {} ({}/{} {what} done, {}s)",
                    s.message,
                    s.done,
                    s.total,
                    started.elapsed().as_secs()
                );
                wait = EVERY;
            }
        });
        Progress {
            step,
            bar: None,
            ticker: Some((stop, thread)),
        }
    }

    /// Now doing `message`, with `done` of `total` steps finished.
    pub(super) fn set(&self, done: u64, total: u64, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message.clone());
        }
        let mut s = self.step.lock().unwrap_or_else(|e| e.into_inner());
        *s = Step {
            message,
            done,
            total,
        };
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some((stop, thread)) = self.ticker.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}
