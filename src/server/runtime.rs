//! The embedded server's own threads.
//!
//! A server under test runs in a process of its own, with its own threads; leakrun's embedded
//! server runs inside leakrun's process. On one runtime the two share their threads, and with them
//! glibc's per-thread arenas: the server's per-connection buffers and leakrun's per-iteration
//! blocks fragment the same free lists, and the process's resident set creeps more than either
//! would alone (docs/benchmarks.md, "the split soak"). [`ServerRuntime`] gives the server a tokio
//! runtime of its own, so its tasks, its channel layer's tasks and every block they allocate stay
//! on threads leakrun's clients and observers never run on.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

/// The name of the server runtime's threads (as `top -H` and `/proc/<pid>/task/*/comm` show).
pub const THREAD_NAME: &str = "leakrun-server";

/// A tokio runtime for the embedded server, with as many worker threads as the machine has cores
/// (as a server on its own would). Dropping it stops its tasks without waiting for them.
pub struct ServerRuntime {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl ServerRuntime {
    /// Starts the runtime's threads.
    pub fn start() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `future` as a task on the server's threads and waits for its output. Tasks it spawns
    /// stay on the server's threads. A panic in it is resumed here.
    pub async fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(future).await {
            Ok(output) => output,
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only a shutdown cancels the task, and that takes `self`.
                Err(error) => unreachable!("a server task was cancelled while its runtime lived: {error}"),
            },
        }
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which is not allowed on another runtime's
        // thread: let them end in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn tasks_and_the_tasks_they_spawn_run_on_the_server_threads() {
        let runtime = ServerRuntime::start().unwrap();
        let (own, spawned) = runtime
            .run(async { (thread_name(), tokio::spawn(async { thread_name() }).await.unwrap()) })
            .await;
        assert_eq!(own.as_deref(), Some(THREAD_NAME));
        assert_eq!(spawned.as_deref(), Some(THREAD_NAME));
        assert_ne!(thread_name().as_deref(), Some(THREAD_NAME));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_it_inside_another_runtime_stops_its_tasks() {
        let runtime = ServerRuntime::start().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let forever = runtime.run(async move {
            tokio::spawn(async move {
                let _held = tx;
                std::future::pending::<()>().await
            })
        });
        let _task = forever.await;
        drop(runtime);
        // The pending task held the sender: it is dropped when the task is.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "the task outlived its runtime: {closed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panic_on_the_server_threads_is_resumed_in_the_caller() {
        let runtime = ServerRuntime::start().unwrap();
        let caught = tokio::spawn(async move { runtime.run(async { panic!("server task") }).await }).await;
        let panic = caught.unwrap_err().into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"server task"));
    }
}
