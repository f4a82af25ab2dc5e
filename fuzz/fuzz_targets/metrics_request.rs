//! The `/metrics` endpoint's request handling over any bytes a client
//! sends: the same `serve_connection` (hyper's HTTP/1 parser with Tapio's
//! timeouts, no keep-alive) and router the endpoint runs, over an
//! in-memory connection whose client sends the input and closes its
//! side. Closing lets every input end at once (an unfinished request
//! would otherwise wait out the 5 s header timeout), at a price: hyper
//! drops a connection whose read side ended before it answered, so this
//! target exercises the request parser (and every error path of it)
//! rather than the answers; the unit tests in `export::prometheus` check
//! those. Whatever the request, the server answers with an HTTP/1.x
//! status line or closes without a word; it never panics or hangs (a hang
//! is a libFuzzer timeout).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapio::export::prometheus::{router, serve_connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

fuzz_target!(|data: &[u8]| {
    RT.with(|rt| {
        rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let app = router(|| "# TYPE up gauge\nup 1\n".to_string());
            let serve = tokio::spawn(serve_connection(server, app));
            // The server may answer (and close) before it has read it all.
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            serve.await.expect("serving a connection does not panic");
            if !answer.is_empty() {
                assert!(
                    answer.starts_with(b"HTTP/1.1 ") || answer.starts_with(b"HTTP/1.0 "),
                    "not an HTTP answer: {:?}",
                    String::from_utf8_lossy(&answer[..answer.len().min(64)])
                );
            }
        })
    });
});
