//! Rebuilds rtchat-server when the embedded folders change: `web/` (pages added, not only
//! edited, must be embedded too) and `vendor/web`, where `scripts/setup` installs the Socket.IO
//! browser bundle with npm (see `transport/socketio/gate.rs`).

fn main() {
    println!("cargo:rerun-if-changed=../../web");
    println!("cargo:rerun-if-changed=../../vendor/web");
}
