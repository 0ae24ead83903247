//! What the HTTP-layer tests share: a real server on a loopback port with a
//! Rust stand-in for the application side.

use std::sync::Arc;

use _ferrule::http::{self, Dispatch, Job, RunOptions};

/// Serve on a free port of 127.0.0.1 with `answer` as the application: it
/// gets every [`Job`] on a thread of its own, with the event loop's runtime
/// handle (to read a streamed body), and must reply through `job.reply`.
/// Returns the port and the stop flag (the server runs until it is set or
/// the test process ends).
pub fn serve<F>(answer: F) -> (u16, tokio::sync::watch::Sender<bool>)
where
    F: Fn(Job, &tokio::runtime::Handle) + Send + 'static,
{
    serve_with(RunOptions::default(), answer)
}

/// [`serve`] with `options` (timeouts, limits).
pub fn serve_with<F>(options: RunOptions, answer: F) -> (u16, tokio::sync::watch::Sender<bool>)
where
    F: Fn(Job, &tokio::runtime::Handle) + Send + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = stop_tx.clone();
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let limits = options.limits;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        std::thread::spawn(move || {
            while let Ok(job) = jobs_rx.recv() {
                answer(job, &handle);
            }
        });
        runtime.block_on(async move {
            let listener =
                http::Listener::Tcp(tokio::net::TcpListener::from_std(std_listener).unwrap());
            let dispatch = Arc::new(Dispatch::new(jobs_tx, None, stop, limits));
            http::run(vec![listener], dispatch, stop_rx, options).await;
        });
    });
    (port, stop_tx)
}

/// A client connection to the server on `port`, whose reads give up after 20 s.
pub fn connect(port: u16) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream
}
