//! Makes the first `cargo run` give a binary whose every page works, and rebuilds
//! rtchat-server when the embedded folders change.
//!
//! - `web/`: the pages (added ones, not only edited ones, must be embedded too).
//! - `vendor/web`: the official Socket.IO browser client, which `/socketio` needs. It is
//!   never committed; npm installs it (`npm ci`, pinned by `vendor/web/package-lock.json`).
//!   When it is missing and `npm` is on the `PATH`, this script installs it, so the README's
//!   first command alone serves a working `/socketio`. Without npm (or offline) the build
//!   still succeeds with a warning, `/config` reports `socketio_client: false`, and the pages
//!   say the Socket.IO client is not in this build. `RTCHAT_NO_NPM=1` skips the install.
//!   See `transport/socketio/gate.rs`.

use std::path::Path;
use std::process::{Command, Stdio};

const VENDOR: &str = "../../vendor/web";
const BUNDLE: &str = "node_modules/socket.io-client/dist/socket.io.min.js";

fn main() {
    println!("cargo:rerun-if-changed=../../web");
    println!("cargo:rerun-if-changed={VENDOR}");
    println!("cargo:rerun-if-env-changed=RTCHAT_NO_NPM");
    install_socketio_client();
}

fn install_socketio_client() {
    let vendor = Path::new(VENDOR);
    if vendor.join(BUNDLE).is_file() || !vendor.join("package-lock.json").is_file() {
        return;
    }
    let skip = std::env::var_os("RTCHAT_NO_NPM").is_some_and(|v| !v.is_empty() && v != "0");
    let missing = "the Socket.IO browser client is not in this build, so /socketio cannot chat";
    if skip {
        println!("cargo:warning={missing} (RTCHAT_NO_NPM is set; run scripts/setup and rebuild)");
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(vendor)
        .stdout(Stdio::null()) // cargo reads a build script's stdout for instructions
        .status();
    match status {
        Ok(s) if s.success() && vendor.join(BUNDLE).is_file() => {}
        Ok(s) => println!(
            "cargo:warning={missing}: `npm ci` in vendor/web failed ({s}); run scripts/setup and rebuild"
        ),
        Err(e) => println!(
            "cargo:warning={missing}: npm is not available ({e}); install Node.js and npm, or run scripts/setup, and rebuild"
        ),
    }
}
