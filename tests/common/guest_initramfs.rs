//! Initramfs images for tests, made with the real tools: `cpio -o -H newc` over a staged
//! tree, then gzip, zstd, `xz --check=crc32` or `lz4 -l` (the kernel's legacy lz4 frame),
//! with an uncompressed early-microcode archive in front as Debian and dracut build them.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A compressor as the initramfs builders call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    None,
    Gzip,
    Zstd,
    Xz,
    Lz4,
}

impl Compressor {
    pub const ALL: [Compressor; 4] = [
        Compressor::Gzip,
        Compressor::Zstd,
        Compressor::Xz,
        Compressor::Lz4,
    ];

    /// The command and the Debian package that provides it.
    pub fn tool(self) -> Option<(&'static str, &'static [&'static str], &'static str)> {
        match self {
            Compressor::None => None,
            Compressor::Gzip => Some(("gzip", &["-c", "-9"], "gzip")),
            Compressor::Zstd => Some(("zstd", &["-c", "-q", "-19"], "zstd")),
            Compressor::Xz => Some(("xz", &["-c", "--check=crc32"], "xz-utils")),
            Compressor::Lz4 => Some(("lz4", &["-c", "-l", "-q"], "lz4")),
        }
    }

    pub fn available(self) -> bool {
        match self.tool() {
            None => true,
            Some((cmd, _, pkg)) => super::guest_tools::have_tool(cmd, pkg),
        }
    }
}

fn pipe(cmd: &str, args: &[&str], input: &[u8], cwd: Option<&Path>) -> Vec<u8> {
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let mut child = c.spawn().unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A newc archive of `files` (path, contents), directories created as needed; `cpio`
/// writes the trailer and pads to 512 bytes with zeros.
pub fn cpio_archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let stage = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for (path, data) in files {
        let p = stage.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        // List parents first, as `find` would.
        let mut so_far = String::new();
        for comp in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            so_far = if so_far.is_empty() {
                comp.to_string()
            } else {
                format!("{so_far}/{comp}")
            };
            if !names.contains(&so_far) {
                names.push(so_far.clone());
            }
        }
        names.push(path.to_string());
    }
    let list = names.join("\n") + "\n";
    pipe(
        "cpio",
        &["-o", "-H", "newc", "--quiet"],
        list.as_bytes(),
        Some(stage.path()),
    )
}

pub fn compress(data: &[u8], c: Compressor) -> Vec<u8> {
    match c.tool() {
        None => data.to_vec(),
        Some((cmd, args, _)) => pipe(cmd, args, data, None),
    }
}

/// The uncompressed early archive that carries CPU microcode.
pub fn early_microcode() -> Vec<u8> {
    cpio_archive(&[("kernel/x86/microcode/GenuineIntel.bin", b"microcode blob")])
}

/// Early microcode, then `files` as one archive compressed with `c`.
pub fn initramfs(files: &[(&str, &[u8])], c: Compressor) -> Vec<u8> {
    let mut image = early_microcode();
    image.extend(compress(&cpio_archive(files), c));
    image
}
