//! One private RabbitMQ for a whole test binary: the broker takes seconds to start, so every test
//! of the binary uses this one with a run prefix of its own. It runs on a dedicated thread with
//! its own runtime (which reaps it), and an `atexit` hook kills it, its helpers and its epmd
//! (all registered with `leakrun::infra`) when the test binary exits, since statics are never
//! dropped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use leakrun::infra::PrivateRabbitMq;

static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn stop_broker_at_exit() {
    leakrun::process::kill_registered();
    if let Some(dir) = DIR.lock().ok().and_then(|mut dir| dir.take()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The URL of the binary's private broker, started on first use.
pub fn broker_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the broker");
            runtime.block_on(async move {
                let broker = match PrivateRabbitMq::start().await {
                    Ok(broker) => broker,
                    Err(error) => {
                        let _ = tx.send(Err(error.to_string()));
                        return;
                    }
                };
                if let Some(dir) = broker.log_path().parent() {
                    *DIR.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
                }
                let _ = tx.send(Ok(broker.url()));
                // Kept until the process exits; the atexit hook kills it.
                std::future::pending::<()>().await;
                drop(broker);
            });
        });
        // SAFETY: registers a plain extern "C" function with no arguments to run at exit.
        unsafe {
            libc::atexit(stop_broker_at_exit);
        }
        rx.recv()
            .expect("the broker thread answers")
            .expect("start a private rabbitmq-server")
    })
}
