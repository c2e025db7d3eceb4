//! The OTLP receiver the otel variant exports to, one process per measuring verb.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::verdict::OTEL;

use super::Plan;
use crate::build::Side;

/// The OTLP receiver process, killed when dropped.
pub struct Receiver {
    child: Child,
    pub endpoint: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts `otlp-receiver` and waits (up to 30 s) for `listening on http://127.0.0.1:PORT`.
    /// std's Command rather than xshell: xshell runs commands to completion, and this one must
    /// live beside the benches.
    pub fn start(exe: &Path) -> Result<Receiver> {
        let what = || format!("OTLP receiver {}", exe.display());
        // stdin stays piped and open inside `child` for the receiver's whole life: the receiver
        // prints its counts and exits when stdin closes, so a null stdin would stop it at once.
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::input(what(), format!("cannot start: {e}"), "rebuild it with `cargo build -p market-telemetry --bin otlp-receiver --features receiver`"))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout?).lines();
            let first = lines.next()?.ok();
            let _ = tx.send(first);
            // Keep draining so the receiver never blocks on a full pipe.
            for _ in lines {}
            Some(())
        });
        let mut receiver = Receiver {
            child,
            endpoint: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .unwrap_or_default();
        match line.trim().strip_prefix("listening on ") {
            Some(url) if url.starts_with("http://127.0.0.1:") => {
                receiver.endpoint = url.to_owned();
                Ok(receiver)
            }
            _ => Err(Error::input(
                what(),
                format!("did not announce its address within 30 s (first line: {line:?})"),
                "it must print `listening on http://127.0.0.1:PORT` first",
            )),
        }
    }
}

/// Starts the OTLP receiver when some otel-variant process will run.
pub(crate) fn start_receiver(
    layout: &Layout,
    prebuilt_dir: Option<&Path>,
    plan: &Plan,
) -> Result<Option<Receiver>> {
    let needs_otel = plan
        .by_name
        .values()
        .any(|m| m.get(OTEL).is_some_and(|(_, ids)| !ids.is_empty()));
    if !needs_otel {
        return Ok(None);
    }
    let exe = match prebuilt_dir {
        Some(dir) => dir.join("otlp-receiver"),
        None => crate::build::receiver(layout, Side::Head)?,
    };
    Receiver::start(&exe).map(Some)
}
