//! `rtchat-ws`: a hand-written, dependency-light RFC 6455 WebSocket server
//! library.
//!
//! * [`handshake`]: validate an upgrade request (for hyper/axum) or run the
//!   whole HTTP/1.1 handshake over a raw stream ([`accept`]).
//! * [`frame`]: header codec, opcodes, close codes, sans-IO [`frame::Decoder`]
//!   and pre-encoded shareable frames ([`EncodedFrame`]).
//! * [`WebSocket`]: the connection: cancellation-safe `recv`, zero-copy
//!   sends, automatic ping/pong/close handling, keepalive and timeouts.
//! * [`deflate`]: permessage-deflate (RFC 7692): negotiation, compression once per
//!   message for many connections ([`SharedMessage`]), bounded decompression.
//!
//! # Example: echo server without an HTTP framework
//!
//! ```no_run
//! use rtchat_ws::{accept, Config, Message};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = accept(tcp, Config::default()).await else { return };
//!         while let Ok(msg) = ws.recv().await {
//!             let sent = match msg {
//!                 Message::Text(t) => ws.send_text(t.into_bytes()).await,
//!                 Message::Binary(b) => ws.send_binary(b).await,
//!                 Message::Close(_) => break,
//!             };
//!             if sent.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! # Example: inside hyper/axum
//!
//! ```no_run
//! use rtchat_ws::handshake::{select_subprotocol, switching_protocols, validate_request};
//!
//! fn upgrade(req: &http::Request<()>) -> http::Response<String> {
//!     match validate_request(req.method(), req.version(), req.headers()) {
//!         Ok(v) => {
//!             let proto = select_subprotocol(req.headers(), &["chat.v1"]);
//!             // spawn: hyper::upgrade::on(req) -> WebSocket::new(TokioIo::new(upgraded), cfg)
//!             switching_protocols(&v, proto).map(|()| String::new())
//!         }
//!         Err(e) => e.to_response(),
//!     }
//! }
//! ```

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use config::Config;
pub use connection::WebSocket;
pub use deflate::{Deflate, DeflateConfig, SharedMessage};
pub use error::{Error, TimeoutKind};
pub use frame::{CloseCode, EncodedFrame, OpCode};
pub use handshake::{accept, accept_with, AcceptOptions, HandshakeError};
pub use message::{CloseFrame, Message, Utf8Bytes};
