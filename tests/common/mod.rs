//! Helpers shared by the integration tests: running the binary, the independent readers
//! (qemu-img, libvhdi), and patterned source disks.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub mod schema;

pub const MIB: u64 = 1 << 20;

/// Runs vdconv. Every JSON document it prints (with --json on stdout, with
/// --progress json on stderr) is checked against docs/json-schema.json.
pub fn vdconv(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdconv"));
    for a in args {
        cmd.arg(a);
    }
    let o = cmd.output().expect("run vdconv");
    check_documents(args, &o);
    o
}

/// Validates what `vdconv args` printed against the documented schema.
pub fn check_documents(args: &[&dyn AsRef<std::ffi::OsStr>], o: &Output) {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let command = words.first().map(String::as_str).unwrap_or("");
    if words.iter().any(|w| w == "--json") {
        let report_exits: &[i32] = match command {
            // batch: 1 when an item failed, its lines still reports.
            "check" | "compare" | "inspect" | "batch" => &[0, 1],
            _ => &[0],
        };
        let def = match o.status.code() {
            Some(c) if report_exits.contains(&c) => command,
            _ => "error",
        };
        let text = String::from_utf8_lossy(&o.stdout);
        if def == "batch" {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let doc: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("batch line is not JSON ({e}): {line}"));
                schema::assert_valid("batch_line", &doc);
            }
        } else if !text.trim().is_empty() || def == "error" {
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("--json printed no JSON document ({e}): {text}{}", stderr(o))
            });
            schema::assert_valid(def, &doc);
        }
    }
    if words
        .windows(2)
        .any(|w| w[0] == "--progress" && w[1] == "json")
    {
        for line in String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.starts_with('{'))
        {
            let doc: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("progress line is not JSON ({e}): {line}"));
            schema::assert_valid("progress", &doc);
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "vdconv failed ({:?}): {}",
        o.status.code(),
        stderr(o)
    );
}

/// True when a tool is usable. A missing tool fails the test, saying what to install,
/// unless VDCONV_SKIP_MISSING_TOOLS=1 opts in to skipping (then the caller skips): a test
/// must not pass by not running.
pub fn have(tool: &str, install: &str) -> bool {
    let ok = match tool {
        "libvhdi" => Command::new("/usr/bin/python3")
            .args(["-c", "import pyvhdi"])
            .output()
            .is_ok_and(|o| o.status.success()),
        _ => Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
    };
    if !ok {
        if std::env::var_os("VDCONV_SKIP_MISSING_TOOLS").is_none() {
            panic!(
                "{tool} is required: install {install} (or set VDCONV_SKIP_MISSING_TOOLS=1 to skip)"
            );
        }
        eprintln!("skipping: {tool} not found (install {install})");
    }
    ok
}

pub fn have_readers() -> bool {
    have("qemu-img", "the Debian package qemu-utils")
        & have("libvhdi", "the Debian package python3-libvhdi")
}

pub fn run(cmd: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(cmd);
    for a in args {
        c.arg(a);
    }
    c.output().unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

pub fn run_ok(cmd: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {:?} failed: {}{}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A VMDK made by qemu-img from a raw disk; `options` as for `qemu-img convert -o`
/// (e.g. "subformat=streamOptimized"), or empty.
pub fn qemu_vmdk(raw: &Path, vmdk: &Path, options: &str) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"convert", &"-f", &"raw", &"-O", &"vmdk"];
    if !options.is_empty() {
        args.push(&"-o");
        args.push(&options);
    }
    args.push(&raw);
    args.push(&vmdk);
    run_ok("qemu-img", &args);
}

/// A tmpfs mounted for a test, unmounted when dropped. None where mounting is not
/// allowed (not root) and VDCONV_SKIP_MISSING_TOOLS=1 opts in to skipping; otherwise
/// that fails the test (CI runs as root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            if std::env::var_os("VDCONV_SKIP_MISSING_TOOLS").is_none() {
                panic!(
                    "mounting a tmpfs needs root (CI runs as root; VDCONV_SKIP_MISSING_TOOLS=1 skips)"
                );
            }
            eprintln!("skipping: cannot mount a tmpfs (not root)");
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// qemu-img's view of an image's virtual size.
pub fn qemu_virtual_size(path: &Path, format: &str) -> u64 {
    let json = run_ok(
        "qemu-img",
        &[&"info", &"-f", &format, &"--output=json", &path],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// `qemu-img compare` says identical (exit 0).
pub fn qemu_compare(a: &Path, a_fmt: &str, b: &Path, b_fmt: &str) {
    let o = run(
        "qemu-img",
        &[&"compare", &"-f", &a_fmt, &"-F", &b_fmt, &a, &b],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "qemu-img compare {} {}: {}{}",
        a.display(),
        b.display(),
        stdout(&o),
        stderr(&o)
    );
}

/// SHA-256 of the virtual contents and the media size, as libvhdi reads them.
pub fn libvhdi_sha256(path: &Path) -> (u64, String) {
    const SCRIPT: &str = "import hashlib, pyvhdi, sys\n\
f = pyvhdi.file()\nf.open(sys.argv[1])\nn = f.media_size\nsize = n\nh = hashlib.sha256()\n\
while n > 0:\n    b = f.read_buffer(min(1 << 20, n))\n    assert b, 'short read'\n    h.update(b)\n    n -= len(b)\n\
print(size, h.hexdigest())\n";
    let out = run_ok("/usr/bin/python3", &[&"-c", &SCRIPT, &path]);
    let (size, hash) = out.trim().split_once(' ').expect("size and hash");
    (size.parse().unwrap(), hash.to_string())
}

/// SHA-256 of qemu-img's raw rendering of an image.
pub fn qemu_sha256(path: &Path, format: &str, scratch: &Path) -> String {
    let raw = scratch.join("qemu-render.raw");
    let _ = fs::remove_file(&raw);
    run_ok(
        "qemu-img",
        &[&"convert", &"-f", &format, &"-O", &"raw", &path, &raw],
    );
    let h = file_sha256(&raw);
    fs::remove_file(&raw).unwrap();
    h
}

pub fn file_sha256(path: &Path) -> String {
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

pub fn bytes_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small deterministic generator (xorshift) for incompressible test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Writes a raw disk of `size` bytes whose 64 KiB pieces cycle through incompressible
/// data, text, written zeros and holes (never written), with data in the last sector.
pub fn patterned_raw(path: &Path, size: u64, seed: u64) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = Rng::new(seed);
    let piece = 64 * 1024u64;
    let mut buf = vec![0u8; piece as usize];
    let mut offset = 0;
    let mut i = 0u64;
    while offset < size {
        let n = piece.min(size - offset) as usize;
        match i % 5 {
            0 => {
                rng.fill(&mut buf[..n]);
                f.write_all_at(&buf[..n], offset).unwrap();
            }
            1 => {
                let text = format!("vdconv test piece {i}\n").repeat(n / 16 + 1);
                f.write_all_at(&text.as_bytes()[..n], offset).unwrap();
            }
            2 => f.write_all_at(&vec![0u8; n], offset).unwrap(),
            // A lone sector of data inside an otherwise empty piece.
            3 if n > 1024 => f.write_all_at(&[0xA5u8; 512], offset + 512).unwrap(),
            _ => {} // hole
        }
        offset += n as u64;
        i += 1;
    }
    f.write_all_at(&[0x5Au8; 512], size - 512).unwrap();
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vdconv-test-")
        .tempdir()
        .unwrap()
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub fn read_to_string(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

/// The files in a folder (to check nothing was left behind).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs a conversion expected to fail with `code`; checks the message and the folder.
pub fn expect_failure(src: &Path, out_dir: &Path, code: i32, needles: &[&str]) -> String {
    let before = listing(out_dir);
    let dst = out_dir.join("out.vhd");
    let o = vdconv(&[&"convert", &src, &dst]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    // One error line; anything before it is a warning about what was tolerated.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("vdconv: error: "))
            .count(),
        1,
        "one error line: {err}"
    );
    assert!(
        lines.last().unwrap().starts_with("vdconv: error: "),
        "{err}"
    );
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("vdconv: warning: ")),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
    assert!(!dst.exists(), "no DST left behind");
    assert_eq!(listing(out_dir), before, "no temporary file left behind");
    err
}

/// What a measured run of vdconv gives: its output, its peak resident memory and how
/// long it took.
pub struct Measured {
    pub output: Output,
    pub max_rss_kib: u64,
    pub elapsed: std::time::Duration,
}

/// Runs vdconv under GNU time (`/usr/bin/time -f %M`), which measures its child's peak
/// resident memory from a small process: a child spawned straight from the test would be
/// charged at exec with the high-water mark of the test process it was forked from.
pub fn vdconv_measured(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Measured {
    assert!(
        have("/usr/bin/time", "the Debian package time"),
        "/usr/bin/time measures peak memory"
    );
    let dir = tempdir();
    let rss_path = dir.path().join("rss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o"])
        .arg(&rss_path)
        .arg(env!("CARGO_BIN_EXE_vdconv"));
    for a in args {
        cmd.arg(a);
    }
    let started = std::time::Instant::now();
    let output = cmd.output().expect("run vdconv under /usr/bin/time");
    let elapsed = started.elapsed();
    // GNU time writes "Command exited with non-zero status N" before the figure.
    let max_rss_kib = fs::read_to_string(&rss_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .expect("GNU time's %M");
    check_documents(args, &output);
    Measured {
        output,
        max_rss_kib,
        elapsed,
    }
}
