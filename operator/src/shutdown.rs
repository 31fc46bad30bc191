//! A cloneable stop signal: the process' SIGTERM/SIGINT, or the end of a leadership term.

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::watch;

/// Fires the paired [`Shutdown`]s.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Resolves once its [`Trigger`] fires (or is dropped).
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new signal, not yet fired.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// A future that resolves when it fires; `Send + Sync + 'static`, as kube-runtime's
    /// `graceful_shutdown_on` wants.
    pub fn wait(&self) -> Shared<BoxFuture<'static, ()>> {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|fired| *fired).await;
        }
        .boxed()
        .shared()
    }
}

/// Fires on the first SIGTERM or SIGINT.
pub fn on_signals() -> std::io::Result<Shutdown> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutting down");
        trigger.fire();
    });
    Ok(shutdown)
}
