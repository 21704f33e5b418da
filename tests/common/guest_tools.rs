//! External tools the guest-readiness tests build their inputs with (hivexsh, cpio, the
//! compressors). In CI (CI=true) a missing tool fails the test naming the Debian package;
//! elsewhere the test skips.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// True when `tool` runs. `package` is the Debian package that provides it.
pub fn have_tool(tool: &str, package: &str) -> bool {
    // Not every tool has --version (hivexsh has no such flag); running at all is enough.
    let ok = Command::new(tool)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required in CI: install the Debian package {package}");
        }
        eprintln!("skipping: {tool} not found (install the Debian package {package})");
    }
    ok
}

pub fn have_hivex() -> bool {
    have_tool("hivexsh", "libhivex-bin") & have_tool("hivexget", "libhivex-bin")
}

pub fn have_cpio() -> bool {
    have_tool("cpio", "cpio")
}
