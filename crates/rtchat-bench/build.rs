//! Embeds what a bench result records about the build that measured it: rtchat's version (the
//! workspace's `rtchat` package) and the git commit (`git rev-parse --short HEAD`, `unknown`
//! without git or a `.git`; `-dirty` when tracked files differed from it at build time).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let root = Path::new(&dir).join("../..");
    let manifest = root.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    println!("cargo:rustc-env=RTCHAT_VERSION={}", version(&manifest));

    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            // Rebuild when HEAD moves or the index changes (a commit, a checkout, `git add`).
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                let dir = Path::new(&dir);
                for file in ["HEAD", "index", "packed-refs"] {
                    println!("cargo:rerun-if-changed={}", dir.join(file).display());
                }
                if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={}", dir.join(head_ref).display());
                }
            }
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=RTCHAT_GIT_COMMIT={commit}");
}

/// The `version` of the workspace root's `[package]` (rtchat), else this crate's.
fn version(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line.strip_prefix("version") {
                let v = v
                    .trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"');
                if !v.is_empty() {
                    return v.to_owned();
                }
            }
        }
    }
    env!("CARGO_PKG_VERSION").to_owned()
}
