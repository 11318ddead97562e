//! Echo server for Autobahn|Testsuite and manual testing.
//!
//! Usage: `cargo run --release --example echo -- [ADDR]` (or `ECHO_ADDR`),
//! default `127.0.0.1:9001`. Prints `listening on ADDR` once bound.
//! Uses the standalone handshake; message limit is 64 MiB so Autobahn's
//! 16 MiB cases pass.

use rtchat_ws::{accept, Config, Message};
use std::time::Duration;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ECHO_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let config = Config {
        ping_interval: None,
        write_timeout: Some(Duration::from_secs(60)),
        ..Config::default().with_max_message_size(64 << 20)
    };
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let config = config.clone();
        tokio::spawn(async move {
            let mut ws = match accept(tcp, config).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("handshake failed: {e}");
                    return;
                }
            };
            loop {
                let sent = match ws.recv().await {
                    Ok(Message::Text(t)) => ws.send_text(t.into_bytes()).await,
                    Ok(Message::Binary(b)) => ws.send_binary(b).await,
                    Ok(Message::Close(_)) | Err(_) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        });
    }
}
