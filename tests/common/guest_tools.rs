//! External tools the guest-readiness tests build their inputs with (hivexsh, cpio, the
//! compressors). A missing tool fails the test naming the Debian package, unless
//! VDCONV_SKIP_MISSING_TOOLS=1 opts in to skipping.
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
        if std::env::var_os("VDCONV_SKIP_MISSING_TOOLS").is_none() {
            panic!(
                "{tool} is required: install the Debian package {package} (or set VDCONV_SKIP_MISSING_TOOLS=1 to skip)"
            );
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
