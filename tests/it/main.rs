//! Every integration test, as modules of one binary: the whole stack is linked once, not
//! once per file. Each module talks to a real server over real sockets (see `common`).

mod auth;
mod common;

mod accounts;
mod backup;
mod bench_smoke;
mod client_auth;
mod client_cli;
mod client_deletion;
mod client_lib;
mod client_pty;
mod client_rooms;
mod cluster;
mod cluster_cli;
mod cluster_moderation;
mod cluster_replicas;
mod connections;
mod deletion;
mod drain;
mod durability;
mod epochs_and_keys;
mod http3;
mod http_input_props;
mod input_rules;
mod long_poll;
mod metrics;
mod moderation;
mod origins;
mod page_config;
mod poll_api;
mod post_limits;
mod private_rooms;
mod rfc8441;
mod rooms_http;
mod rooms_ws;
mod server_shell;
mod sse;
mod streams;
mod tls;
mod user_deletion;
mod websocket;
mod ws_deflate;
