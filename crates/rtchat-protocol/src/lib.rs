//! rtchat's wire contract in one place: the paths, parameters, subprotocols, frame types and
//! event names, the shapes that travel, and the names of the transports. The server, the
//! client library and the bench all take their names from here, so they cannot drift apart;
//! `docs/PROTOCOL.md` is the same contract in prose.
//!
//! This crate holds no behaviour: no I/O, no validation beyond what a name or a shape needs.

pub mod http;
pub mod shapes;
pub mod socketio;
pub mod transport;
pub mod v1;

pub use shapes::{valid_epoch, ErrorBody, Message, Page, PostAck};
pub use transport::Transport;
