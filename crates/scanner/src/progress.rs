//! A one-line progress display on standard error, only when it is a terminal:
//! files and bytes so far and their rates. Never shown in pipes or CI logs.

use crate::engine::Sink;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(200);

/// Run `work` while a reporter thread redraws the progress line, if `enabled`
/// and standard error is a terminal.
pub(crate) fn with_progress<T>(sink: &Sink, enabled: bool, work: impl FnOnce() -> T) -> T {
    if !enabled || !std::io::stderr().is_terminal() {
        return work();
    }
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let start = Instant::now();
            let mut drawn = false;
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                let secs = start.elapsed().as_secs_f64().max(1e-3);
                let files = sink.files.load(Ordering::Relaxed);
                let bytes = sink.bytes.load(Ordering::Relaxed);
                let mb = bytes as f64 / 1e6;
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2Kscanning: {files} files, {mb:.1} MB  ({:.0} files/s, {:.1} MB/s)",
                    files as f64 / secs,
                    mb / secs
                );
                let _ = err.flush();
                drawn = true;
            }
            if drawn {
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            }
        });
        let out = work();
        drop(stop);
        out
    })
}
