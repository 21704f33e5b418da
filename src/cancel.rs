//! Cancellation: a token the caller owns and the library polls in every long loop. The
//! binary sets it from its SIGINT/SIGTERM handler; a library user sets it however it likes.
//! A fresh token per run, so nothing process-wide needs resetting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

/// Shared flag: 0 while running, otherwise why it stopped (a signal number, or -1 when
/// cancelled by a call). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicI32>);

/// The reason stored by `cancel()`.
const CANCELLED: i32 = -1;

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every loop holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(CANCELLED, Ordering::SeqCst);
    }

    /// Records that `signal` arrived. Only an atomic store: safe inside a signal handler.
    pub fn cancel_by_signal(&self, signal: i32) {
        self.0.store(signal, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// The signal that cancelled the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        let v = self.0.load(Ordering::SeqCst);
        (v > 0).then_some(v)
    }

    /// `Err(Interrupted)` once cancelled: the `?` in long loops.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::interrupted())
        } else {
            Ok(())
        }
    }

    /// The raw flag, for handlers that can only store into an atomic.
    pub fn flag(&self) -> Arc<AtomicI32> {
        Arc::clone(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(a.check().is_ok());
        b.cancel_by_signal(2);
        assert!(a.is_cancelled());
        assert_eq!(a.signal(), Some(2));
        assert_eq!(
            a.check().unwrap_err().kind(),
            crate::error::ErrorKind::Interrupted
        );
        let c = Cancel::new();
        c.cancel();
        assert_eq!(c.signal(), None);
        assert!(c.is_cancelled());
    }
}
