//! Snapshot chains (issue 10), through the binary as a user runs it:
//! - VMware chains made by qemu-img and qemu-io (hosted monolithicSparse and
//!   twoGbMaxExtentSparse deltas, zeroed grains over parent data, writes straddling
//!   grains), and ESXi COWD and seSparse chains from fixtures/make_deltas.py, flattened
//!   into every output: qemu-img compare against the chain (qemu reads VMDK chains) and
//!   libvhdi's SHA-256 of the output against qemu's rendering of the chain;
//! - --keep-chain: libvhdi opens the top differencing file with its parents
//!   (pyvhdi `set_parent`) and reads exactly the flattened contents; every file passes
//!   `vdconv check`; each child is no larger than what its delta changes plus metadata;
//! - differencing VHD and VHDX as input, their identity checks, and the chain errors: a
//!   wrong parentCID, a missing parent, a cycle, a parent of another size, a chain too
//!   deep; each one line with its exit code and JSON kind, nothing left behind;
//! - finding parents: absolute Windows and VMFS hints, another case, confinement,
//!   --parent.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn have_tools() -> bool {
    have_readers() & have("qemu-io", "the Debian package qemu-utils")
}

/// A chain made by qemu: its folder, and its links' descriptors base first.
struct QemuChain {
    dir: tempfile::TempDir,
    links: Vec<PathBuf>,
}

impl QemuChain {
    fn top(&self) -> &Path {
        self.links.last().unwrap()
    }
}

fn qemu_io(image: &Path, commands: &[&str]) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-f", &"vmdk"];
    for c in commands {
        args.push(&"-c");
        args.push(c);
    }
    args.push(&image);
    run_ok("qemu-io", &args);
}

/// `qemu-img create` of a delta named `name` over `parent`, with creation options.
fn qemu_delta(dir: &Path, name: &str, parent: &str, options: &str) -> PathBuf {
    let p = dir.join(name);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create", &"-q", &"-f", &"vmdk"];
    if !options.is_empty() {
        args.push(&"-o");
        args.push(&options);
    }
    args.extend([
        &"-b" as &dyn AsRef<std::ffi::OsStr>,
        &parent,
        &"-F",
        &"vmdk",
        &p,
    ]);
    run_ok("qemu-img", &args);
    p
}

/// base ← d1 (monolithicSparse, zeroed grains) ← d2 (twoGbMaxExtentSparse) ← d3
/// (monolithicSparse, zeroed grains), 64 MiB: data, zeros over data, partial grains,
/// writes straddling grains and inside the zero grains of the link below.
fn qemu_chain() -> QemuChain {
    let dir = tempdir();
    let d = dir.path();
    let base = d.join("base.vmdk");
    run_ok(
        "qemu-img",
        &[&"create", &"-q", &"-f", &"vmdk", &base, &"64M"],
    );
    qemu_io(
        &base,
        &[
            "write -q -P 0x11 0 4M",
            "write -q -P 0x12 6M 3M",
            "write -q -P 0x13 20M 64k",
            "write -q -P 0x14 63M 1M",
        ],
    );
    let d1 = qemu_delta(d, "disk-000001.vmdk", "base.vmdk", "zeroed_grain=on");
    qemu_io(
        &d1,
        &[
            "write -q -P 0x21 1000k 100k",
            "write -q -z 6M 1M",
            "write -q -z 8197k 10k",
            "write -q -P 0x22 40M 4k",
        ],
    );
    let d2 = qemu_delta(
        d,
        "disk-000002.vmdk",
        "disk-000001.vmdk",
        "subformat=twoGbMaxExtentSparse",
    );
    qemu_io(
        &d2,
        &[
            "write -q -P 0x31 1020k 8k",
            "write -q -P 0x32 6291968 512",
            "write -q -P 0x33 33554400 64",
        ],
    );
    let d3 = qemu_delta(d, "disk-000003.vmdk", "disk-000002.vmdk", "zeroed_grain=on");
    qemu_io(&d3, &["write -q -z 0 64k", "write -q -P 0x41 62M 1M"]);
    QemuChain {
        links: vec![base, d1, d2, d3],
        dir,
    }
}

/// SHA-256 and size of the top of a VHD/VHDX chain as libvhdi reads it, its parents
/// attached with pyvhdi's set_parent (files top first).
fn libvhdi_chain_sha256(files: &[PathBuf]) -> (u64, String) {
    const SCRIPT: &str = "import hashlib, pyvhdi, sys\n\
files = []\n\
for p in sys.argv[1:]:\n    f = pyvhdi.file()\n    f.open(p)\n    files.append(f)\n\
for child, parent in zip(files, files[1:]):\n    child.set_parent(parent)\n\
top = files[0]\nn = top.media_size\nsize = n\nh = hashlib.sha256()\n\
while n > 0:\n    b = top.read_buffer(min(1 << 20, n))\n    assert b, 'short read'\n    h.update(b)\n    n -= len(b)\n\
print(size, h.hexdigest())\n";
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-c", &SCRIPT];
    for f in files {
        args.push(f);
    }
    let out = run_ok("/usr/bin/python3", &args);
    let (size, hash) = out.trim().split_once(' ').expect("size and hash");
    (size.parse().unwrap(), hash.to_string())
}

/// Bytes the file system stores for a file (holes excluded).
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("JSON: {}{}", stdout(o), stderr(o)))
}

/// Converts `src` to `dst` with `args`, checks it against the chain (qemu-img compare and
/// libvhdi's SHA-256 of the output against qemu's rendering), and that it is clean.
fn convert_and_check(src: &Path, dst: &Path, args: &[&str], expected_sha: &str, size: u64) {
    let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"-q"];
    for x in args {
        a.push(x);
    }
    a.push(&src);
    a.push(&dst);
    assert_ok(&vdconv(&a));
    let fmt = if dst.extension().unwrap() == "vhd" {
        "vpc"
    } else {
        "vhdx"
    };
    qemu_compare(dst, fmt, src, "vmdk");
    assert_eq!(
        libvhdi_sha256(dst),
        (size, expected_sha.to_string()),
        "{}",
        dst.display()
    );
    let o = vdconv(&[&"check", &dst]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn qemu_chains_flatten_into_every_output() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let top = chain.top();
    let sha = qemu_sha256(top, "vmdk", chain.dir.path());
    let out = tempdir();
    for (name, args) in [
        ("fixed.vhd", &["--type", "fixed"][..]),
        ("dynamic.vhd", &[][..]),
        ("fixed.vhdx", &["--type", "fixed"][..]),
        ("dynamic.vhdx", &["--block-size", "1M"][..]),
    ] {
        convert_and_check(top, &out.path().join(name), args, &sha, 64 * MIB);
    }
    // Every link as a top of its own shorter chain.
    for link in &chain.links[1..3] {
        let sha = qemu_sha256(link, "vmdk", chain.dir.path());
        let dst = out.path().join("mid.vhdx");
        convert_and_check(link, &dst, &["--force"], &sha, 64 * MIB);
    }
    // compare reads chains too.
    let o = vdconv(&[&"compare", &top, &out.path().join("dynamic.vhd")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = vdconv(&[&"compare", &top, &chain.links[2]]);
    assert_eq!(o.status.code(), Some(1), "the top differs from its parent");
}

#[test]
fn a_split_delta_spans_its_extents() {
    if !have_tools() {
        return;
    }
    // A twoGbMaxExtentSparse delta of 2 GiB + 2 MiB: two extent files, writes
    // straddling the boundary between them.
    let dir = tempdir();
    let d = dir.path();
    let base = d.join("base.vmdk");
    run_ok(
        "qemu-img",
        &[&"create", &"-q", &"-f", &"vmdk", &base, &"2050M"],
    );
    qemu_io(
        &base,
        &["write -q -P 0x51 2047M 2M", "write -q -P 0x52 0 1M"],
    );
    let top = qemu_delta(
        d,
        "split.vmdk",
        "base.vmdk",
        "subformat=twoGbMaxExtentSparse",
    );
    qemu_io(&top, &["write -q -P 0x61 2096000k 2000k"]);
    assert!(d.join("split-s002.vmdk").exists(), "two extents");
    let out = d.join("flat.vhdx");
    assert_ok(&vdconv(&[&"convert", &"-q", &top, &out]));
    qemu_compare(&out, "vhdx", &top, "vmdk");
    let (size, sha) = libvhdi_sha256(&out);
    assert_eq!(size, 2050 * MIB);
    // qemu's rendering, hashed by Python (a debug build hashes 2 GiB slowly).
    let raw = d.join("qemu.raw");
    run_ok(
        "qemu-img",
        &[&"convert", &"-f", &"vmdk", &"-O", &"raw", &top, &raw],
    );
    let expected = run_ok(
        "/usr/bin/python3",
        &[
            &"-c",
            &"import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],'rb')\nfor b in iter(lambda: f.read(1<<20), b''): h.update(b)\nprint(h.hexdigest())",
            &raw,
        ],
    );
    assert_eq!(sha, expected.trim());
}

/// The generated base ← COWD ← seSparse chain (fixtures/make_deltas.py) and its
/// manifest; None without python3 or qemu-img (whose base it uses).
fn esxi_chain() -> Option<(tempfile::TempDir, Value)> {
    if !have_tools() || !have("python3", "the Debian package python3") {
        return None;
    }
    let dir = tempdir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/make_deltas.py");
    run_ok("python3", &[&script, &dir.path(), &"--base", &"qemu"]);
    let manifest =
        serde_json::from_str(&read_to_string(&dir.path().join("manifest.json"))).unwrap();
    Some((dir, manifest))
}

#[test]
fn cowd_and_sesparse_chains_convert_as_qemu_reads_them() {
    let Some((dir, m)) = esxi_chain() else { return };
    let size = m["size"].as_u64().unwrap();
    for link in ["cowd", "sesparse"] {
        let top = dir.path().join(m[link]["vmdk"].as_str().unwrap());
        let sha = m[link]["sha256"].as_str().unwrap();
        // The oracle: qemu reads what the generator says it laid out.
        assert_eq!(qemu_sha256(&top, "vmdk", dir.path()), sha);
        for (name, args) in [
            ("flat.vhd", &["--type", "fixed", "--force"][..]),
            ("flat.vhdx", &["--force"][..]),
        ] {
            convert_and_check(&top, &dir.path().join(name), args, sha, size);
        }
        let o = vdconv(&[&"check", &top]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    }
    // And kept as a chain: base.vhdx ← cowd.avhdx ← sesparse.avhdx.
    let out = tempdir();
    let top = dir.path().join("sesparse.vmdk");
    let dst = out.path().join("base.vhdx");
    assert_ok(&vdconv(&[&"convert", &"-q", &"--keep-chain", &top, &dst]));
    let files = [
        out.path().join("sesparse.avhdx"),
        out.path().join("cowd.avhdx"),
        dst,
    ];
    assert_eq!(
        libvhdi_chain_sha256(&files),
        (size, m["sesparse"]["sha256"].as_str().unwrap().to_string())
    );
}

/// Runs --keep-chain of `top` into a new folder; returns the folder and the JSON report.
fn keep_chain(top: &Path, dst_name: &str, args: &[&str]) -> (tempfile::TempDir, Value) {
    let out = tempdir();
    let dst = out.path().join(dst_name);
    let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"--json", &"--keep-chain"];
    for x in args {
        a.push(x);
    }
    a.push(&top);
    a.push(&dst);
    let o = vdconv(&a);
    assert_ok(&o);
    let report = json(&o);
    (out, report)
}

#[test]
fn keep_chain_vhdx_is_the_chain_libvhdi_reads() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let top = chain.top();
    let sha = qemu_sha256(top, "vmdk", chain.dir.path());
    let (out, report) = keep_chain(top, "disk.vhdx", &["--verify"]);
    let o = out.path();
    // --verify read the written chain back through vdconv's readers, linked.
    assert_eq!(report["verified"], true);
    assert_eq!(report["sha256"], sha.as_str());
    let files: Vec<PathBuf> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    // Parents first; each child named after its VMware file, beside DST.
    assert_eq!(
        files,
        [
            o.join("disk.vhdx"),
            o.join("disk-000001.avhdx"),
            o.join("disk-000002.avhdx"),
            o.join("disk-000003.avhdx"),
        ]
    );
    assert_eq!(listing(o).len(), 4, "no temporary files: {:?}", listing(o));
    let top_first: Vec<PathBuf> = files.iter().rev().cloned().collect();
    assert_eq!(libvhdi_chain_sha256(&top_first), (64 * MIB, sha.clone()));
    // Each level of the chain reads as the VMware chain cut at the same level.
    for level in 1..3 {
        let expected = qemu_sha256(&chain.links[level], "vmdk", chain.dir.path());
        assert_eq!(
            libvhdi_chain_sha256(&top_first[3 - level..]),
            (64 * MIB, expected),
            "level {level}"
        );
    }
    // The base alone is the base.
    qemu_compare(&files[0], "vhdx", &chain.links[0], "vmdk");
    for f in &files {
        let c = vdconv(&[&"check", &"--json", f]);
        assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
        assert_eq!(
            json(&c)["findings"],
            serde_json::json!([]),
            "{}",
            f.display()
        );
    }
    // vdconv reads the VHDX chain back; qemu's vhdx driver has no backing files: it
    // refuses any image with HasParent set (ENOTSUP), so it cannot read the top.
    let c = vdconv(&[&"compare", &files[3], &top]);
    assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
    let q = run(
        "qemu-img",
        &[&"compare", &"-f", &"vhdx", &"-F", &"vmdk", &files[3], &top],
    );
    if q.status.code() != Some(0) {
        assert!(
            stderr(&q).contains("not supported"),
            "qemu-img refuses differencing VHDX only as unsupported: {}",
            stderr(&q)
        );
    }
    // Flattening the written chain gives the VMware chain's contents.
    let flat = o.join("flat.vhd");
    assert_ok(&vdconv(&[&"convert", &"-q", &files[3], &flat]));
    qemu_compare(&flat, "vpc", top, "vmdk");
    // A child holds what its delta changed, plus metadata: never whole blocks of the
    // parent. (Zeros hiding the parent are holes.)
    let info = json(&vdconv(&[&"info", &"--json", &top]));
    for (i, f) in files[1..].iter().rev().enumerate() {
        let delta_data = info["chain"][i]["allocated_bytes"].as_u64().unwrap();
        assert!(
            allocated(f) <= delta_data + 2 * MIB,
            "{} holds {} bytes for {} bytes of delta data",
            f.display(),
            allocated(f),
            delta_data
        );
    }
}

#[test]
fn keep_chain_vhd_is_the_chain_libvhdi_reads() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let top = chain.top();
    let sha = qemu_sha256(top, "vmdk", chain.dir.path());
    for base_type in ["dynamic", "fixed"] {
        let (out, report) = keep_chain(top, "disk.vhd", &["--type", base_type]);
        let o = out.path();
        let top_first = [
            o.join("disk-000003.vhd"),
            o.join("disk-000002.vhd"),
            o.join("disk-000001.vhd"),
            o.join("disk.vhd"),
        ];
        assert_eq!(report["files"].as_array().unwrap().len(), 4);
        assert_eq!(libvhdi_chain_sha256(&top_first), (64 * MIB, sha.clone()));
        for f in &top_first {
            let c = vdconv(&[&"check", f]);
            assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
        }
        let c = vdconv(&[&"compare", &top_first[0], &top]);
        assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
        // qemu's vpc driver reads a differencing VHD as if it had no parent: only the
        // base can be compared there.
        qemu_compare(&top_first[3], "vpc", &chain.links[0], "vmdk");
        let info = json(&vdconv(&[&"info", &"--json", &top]));
        for (i, f) in top_first[..3].iter().enumerate() {
            let delta_data = info["chain"][i]["allocated_bytes"].as_u64().unwrap();
            assert!(allocated(f) <= delta_data + MIB, "{}", f.display());
        }
    }
}

#[test]
fn keep_chain_output_is_reproducible_and_all_or_nothing() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let top = chain.top();
    let run_once = |dir: &Path| {
        let dst = dir.join("disk.vhdx");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vdconv"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["convert", "-q", "--keep-chain"])
            .arg(top)
            .arg(&dst)
            .output()
            .unwrap();
        assert_ok(&o);
    };
    let (a, b) = (tempdir(), tempdir());
    run_once(a.path());
    run_once(b.path());
    for name in listing(a.path()) {
        assert!(
            fs::read(a.path().join(&name)).unwrap() == fs::read(b.path().join(&name)).unwrap(),
            "{name} differs between two runs"
        );
    }
    // Every child gets its own ids: parent_linkage names the file before it.
    let info = json(&vdconv(&[
        &"info",
        &"--json",
        &a.path().join("disk-000003.avhdx"),
    ]));
    let links = info["chain"].as_array().unwrap();
    assert_eq!(links.len(), 4);
    for w in links.windows(2) {
        assert_eq!(w[0]["parent_id"], w[1]["id"]);
        assert_ne!(w[0]["id"], w[1]["id"]);
    }
    // A name already taken: refused before anything is written (exit 4).
    let c = tempdir();
    fs::write(c.path().join("disk-000002.avhdx"), b"mine").unwrap();
    let before = listing(c.path());
    let o = vdconv(&[
        &"convert",
        &"--keep-chain",
        &top,
        &c.path().join("disk.vhdx"),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("disk-000002.avhdx"), "{}", stderr(&o));
    assert_eq!(listing(c.path()), before, "nothing written");
    assert_eq!(
        fs::read(c.path().join("disk-000002.avhdx")).unwrap(),
        b"mine"
    );
    // Options that cannot hold a chain are usage errors.
    let o = vdconv(&[
        &"convert",
        &"--keep-chain",
        &"--target",
        &"azure",
        &top,
        &c.path().join("x.vhd"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A copy of `chain`'s folder to break.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempdir();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

/// Replaces `from` by `to` in a text file.
fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} holds {from:?}", path.display());
    fs::write(path, text.replace(from, to)).unwrap();
}

fn descriptor_value(path: &Path, key: &str) -> String {
    let text = String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
        .trim_matches('"')
        .to_string()
}

/// The JSON error document of a failing convert.
fn error_kind(src: &Path, extra: &[&str]) -> (i32, String) {
    let out = tempdir();
    let dst = out.path().join("x.vhdx");
    let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"--json"];
    for x in extra {
        a.push(x);
    }
    a.push(&src);
    a.push(&dst);
    let o = vdconv(&a);
    let v = json(&o);
    assert!(listing(out.path()).is_empty(), "nothing left behind");
    (
        o.status.code().unwrap(),
        v["error"]["kind"].as_str().unwrap().to_string(),
    )
}

#[test]
fn broken_links_fail_naming_the_link() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let out = tempdir();

    // parentCID that is not the parent's CID (the text descriptor of d2).
    let broken = copy_dir(chain.dir.path());
    let d2 = broken.path().join("disk-000002.vmdk");
    let d1 = broken.path().join("disk-000001.vmdk");
    let parent_cid = descriptor_value(&d2, "parentCID");
    let cid = descriptor_value(&d1, "CID");
    assert_eq!(parent_cid, cid);
    edit(
        &d2,
        &format!("parentCID={parent_cid}"),
        "parentCID=0badc1d0",
    );
    let top = broken.path().join("disk-000003.vmdk");
    let err = expect_failure(
        &top,
        out.path(),
        3,
        &[
            "disk-000002.vmdk",
            "0badc1d0",
            "disk-000001.vmdk",
            cid.as_str(),
            "--ignore-cid",
        ],
    );
    assert!(err.contains("parentCID"), "{err}");
    assert_eq!(error_kind(&top, &[]), (3, "cid-mismatch".to_string()));
    let o = vdconv(&[&"convert", &"--json", &top, &out.path().join("x.vhdx")]);
    assert_eq!(json(&o)["error"]["rule"], "vmdk-parent");
    // --ignore-cid reads it anyway, saying so.
    let dst = out.path().join("ignored.vhdx");
    let o = vdconv(&[&"convert", &"--ignore-cid", &top, &dst]);
    assert_ok(&o);
    assert!(stderr(&o).contains("vdconv: warning: ") && stderr(&o).contains("--ignore-cid"));
    qemu_compare(&dst, "vhdx", chain.top(), "vmdk");
    // check reports the link as a finding of vmdk-parent.
    let c = json(&vdconv(&[&"check", &"--json", &top]));
    let rules: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["vmdk-parent"]);
    fs::remove_file(&dst).unwrap();

    // A missing parent.
    let missing = copy_dir(chain.dir.path());
    fs::remove_file(missing.path().join("base.vmdk")).unwrap();
    let top = missing.path().join("disk-000003.vmdk");
    expect_failure(
        &top,
        out.path(),
        3,
        &["disk-000001.vmdk", "base.vmdk", "--parent"],
    );
    assert_eq!(error_kind(&top, &[]), (3, "missing-parent".to_string()));
    let c = vdconv(&[&"check", &top]);
    assert_eq!(c.status.code(), Some(1));
    assert!(stdout(&c).contains("vmdk-parent"), "{}", stdout(&c));

    // A cycle: d1 names d3 as its parent.
    let cycle = copy_dir(chain.dir.path());
    let d1 = cycle.path().join("disk-000001.vmdk");
    // d1 is monolithicSparse: its descriptor is embedded; the same length keeps it in place.
    let mut bytes = fs::read(&d1).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"base.vmdk")
        .expect("hint");
    bytes.splice(at..at + 9, b"ddd3.vmdk".iter().copied());
    fs::write(&d1, bytes).unwrap();
    fs::rename(
        cycle.path().join("disk-000003.vmdk"),
        cycle.path().join("ddd3.vmdk"),
    )
    .unwrap();
    // ddd3's own hint still says disk-000002.vmdk: ddd3 ← d2 ← d1 ← ddd3.
    let top = cycle.path().join("ddd3.vmdk");
    expect_failure(&top, out.path(), 3, &["cycle"]);
    assert_eq!(
        error_kind(&top, &["--ignore-cid"]),
        (3, "chain-broken".to_string())
    );

    // A parent of another size.
    let sized = copy_dir(chain.dir.path());
    let small = sized.path().join("small.vmdk");
    run_ok(
        "qemu-img",
        &[&"create", &"-q", &"-f", &"vmdk", &small, &"32M"],
    );
    let d2 = sized.path().join("disk-000002.vmdk");
    edit(
        &d2,
        "parentFileNameHint=\"disk-000001.vmdk\"",
        "parentFileNameHint=\"small.vmdk\"",
    );
    let err = expect_failure(&d2, out.path(), 3, &["small.vmdk", "33554432", "67108864"]);
    assert!(err.contains("disk-000002.vmdk"), "{err}");
    assert_eq!(
        error_kind(&d2, &["--ignore-cid"]),
        (3, "chain-broken".to_string())
    );
}

#[test]
fn a_chain_deeper_than_255_links_is_refused_quickly() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    // One small extent file, named by 300 text descriptors in a line.
    run_ok(
        "qemu-img",
        &[
            &"create",
            &"-q",
            &"-f",
            &"vmdk",
            &"-o",
            &"subformat=twoGbMaxExtentSparse",
            &d.join("tiny.vmdk"),
            &"1M",
        ],
    );
    for i in 0..300u32 {
        let parent = if i < 299 {
            format!(
                "parentCID={:08x}\nparentFileNameHint=\"link-{:03}.vmdk\"\n",
                i + 2,
                i + 1
            )
        } else {
            "parentCID=ffffffff\n".to_string()
        };
        fs::write(
            d.join(format!("link-{i:03}.vmdk")),
            format!(
                "# Disk DescriptorFile\nversion=1\nCID={:08x}\n{parent}createType=\"twoGbMaxExtentSparse\"\nRW 2048 SPARSE \"tiny-s001.vmdk\"\n",
                i + 1
            ),
        )
        .unwrap();
    }
    let out = tempdir();
    let started = std::time::Instant::now();
    expect_failure(&d.join("link-000.vmdk"), out.path(), 3, &["255"]);
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert_eq!(
        error_kind(&d.join("link-000.vmdk"), &[]),
        (3, "chain-broken".to_string())
    );
    // 255 links are read.
    let o = vdconv(&[&"info", &"--json", &d.join("link-045.vmdk")]);
    assert_ok(&o);
    assert_eq!(json(&o)["chain"].as_array().unwrap().len(), 255);
}

#[test]
fn parents_are_found_as_vmware_records_them() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let reference = chain.top().to_path_buf();
    let d2_hint = "parentFileNameHint=\"disk-000001.vmdk\"";
    let out = tempdir();
    for (hint, needle) in [
        (r"C:\VMs\Disk\disk-000001.vmdk", "in its folder"),
        (
            "/vmfs/volumes/501d996c-86c66169-eea2-005056b007c1/vm/disk-000001.vmdk",
            "in its folder",
        ),
        ("DISK-000001.VMDK", "only in case"),
    ] {
        let copy = copy_dir(chain.dir.path());
        let d2 = copy.path().join("disk-000002.vmdk");
        edit(&d2, d2_hint, &format!("parentFileNameHint=\"{hint}\""));
        let dst = out.path().join("found.vhdx");
        let o = vdconv(&[
            &"convert",
            &"--force",
            &copy.path().join("disk-000003.vmdk"),
            &dst,
        ]);
        assert_ok(&o);
        let err = stderr(&o);
        assert!(
            err.contains("vdconv: warning: ") && err.contains(needle) && err.contains(hint),
            "{hint}: {err}"
        );
        qemu_compare(&dst, "vhdx", &reference, "vmdk");
    }

    // A parent outside the child's folder: refused unless allowed.
    let root = tempdir();
    let vm = root.path().join("vm");
    let other = root.path().join("other");
    fs::create_dir(&vm).unwrap();
    fs::create_dir(&other).unwrap();
    for e in fs::read_dir(chain.dir.path()).unwrap() {
        let e = e.unwrap();
        let to = if e.file_name() == "base.vmdk" {
            &other
        } else {
            &vm
        };
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    // d1's hint (in its embedded descriptor, rewritten at the same length) leads through
    // a link out of the folder: vm/o -> ../other.
    let d1 = vm.join("disk-000001.vmdk");
    let mut bytes = fs::read(&d1).unwrap();
    let at = bytes.windows(9).position(|w| w == b"base.vmdk").unwrap();
    bytes.splice(at..at + 9, b"o/base.vm".iter().copied());
    fs::write(&d1, bytes).unwrap();
    fs::rename(other.join("base.vmdk"), other.join("base.vm")).unwrap();
    std::os::unix::fs::symlink("../other", vm.join("o")).unwrap();
    let top = vm.join("disk-000003.vmdk");
    expect_failure(
        &top,
        out.path(),
        3,
        &["disk-000001.vmdk", "outside", "--allow-outside-paths"],
    );
    assert_eq!(error_kind(&top, &[]), (3, "path-refused".to_string()));
    let dst = out.path().join("outside.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &"--allow-outside-paths",
        &top,
        &dst,
    ]));
    qemu_compare(&dst, "vhdx", &reference, "vmdk");

    // --parent names the top's parent when the recorded one is missing.
    let copy = copy_dir(chain.dir.path());
    fs::rename(
        copy.path().join("disk-000002.vmdk"),
        copy.path().join("moved.vmdk"),
    )
    .unwrap();
    let top = copy.path().join("disk-000003.vmdk");
    let parent = copy.path().join("moved.vmdk");
    let dst = out.path().join("named.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &"--parent",
        &parent,
        &top,
        &dst,
    ]));
    qemu_compare(&dst, "vhdx", &reference, "vmdk");
    let info = json(&vdconv(&[&"info", &"--json", &"--parent", &parent, &top]));
    assert_eq!(info["chain"].as_array().unwrap().len(), 4);
    assert_eq!(info["chain"][0]["parent"], parent.display().to_string());
    let c = vdconv(&[&"check", &"--parent", &parent, &top]);
    assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
    // --parent on an image without a parent is a usage error.
    let o = vdconv(&[
        &"info",
        &"--parent",
        &parent,
        &copy.path().join("base.vmdk"),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn info_lists_the_chain_link_by_link() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let o = vdconv(&[&"info", &"--json", &chain.top()]);
    assert_ok(&o);
    let v = json(&o);
    let links = v["chain"].as_array().unwrap();
    assert_eq!(links.len(), 4);
    let names: Vec<&str> = links
        .iter()
        .map(|l| {
            Path::new(l["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "disk-000003.vmdk",
            "disk-000002.vmdk",
            "disk-000001.vmdk",
            "base.vmdk"
        ]
    );
    assert_eq!(links[1]["layout"], "twoGbMaxExtentSparse");
    for (i, l) in links.iter().enumerate() {
        assert_eq!(l["id_kind"], "cid");
        let cid = descriptor_value(&chain.links[3 - i], "CID");
        assert_eq!(l["id"].as_str().unwrap(), format!("{:0>8}", cid));
        if i < 3 {
            assert_eq!(l["parent_id"], links[i + 1]["id"]);
            assert_eq!(l["parent"], links[i + 1]["file"]);
        } else {
            assert!(l["parent_id"].is_null() && l["parent"].is_null());
        }
        assert!(l["allocated_bytes"].as_u64().unwrap() > 0);
    }
    // The top's own data is small; the chain's is the base's and more.
    assert!(links[0]["allocated_bytes"].as_u64().unwrap() < 2 * MIB);
    assert!(v["allocated_bytes"].as_u64().unwrap() > links[3]["allocated_bytes"].as_u64().unwrap());
    let text = stdout(&vdconv(&[&"info", &chain.top()]));
    assert!(text.contains("chain: 4 links"), "{text}");
    // A plain image: a one-entry chain.
    let v = json(&vdconv(&[&"info", &"--json", &chain.links[0]]));
    assert_eq!(v["chain"].as_array().unwrap().len(), 1);
    assert!(v["chain"][0]["parent"].is_null());
}

#[test]
fn differencing_disks_check_their_parents_identity() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let top = chain.top();
    for (ext, base, child) in [
        ("vhdx", "disk.vhdx", "disk-000001.avhdx"),
        ("vhd", "disk.vhd", "disk-000001.vhd"),
    ] {
        let (a, _) = keep_chain(top, base, &[]);
        let (b, _) = keep_chain(top, base, &[]);
        // b's base is another file with the same contents: another DataWriteGuid or
        // unique id than a's children recorded.
        fs::copy(b.path().join(base), a.path().join(base)).unwrap();
        let child = a.path().join(child);
        let (code, kind) = error_kind(&child, &[]);
        assert_eq!((code, kind.as_str()), (3, "cid-mismatch"), "{ext}");
        let out = tempdir();
        let needle = if ext == "vhdx" {
            "parent_linkage"
        } else {
            "parent unique id"
        };
        expect_failure(&child, out.path(), 3, &[needle, base]);
        let c = vdconv(&[&"check", &child]);
        assert_eq!(c.status.code(), Some(1), "{}", stdout(&c));
        assert!(
            stdout(&c).contains(&format!("{ext}-parent-locator")),
            "{}",
            stdout(&c)
        );
        // --ignore-cid reads the chain, which holds the same contents.
        let dst = out.path().join("flat.vhdx");
        assert_ok(&vdconv(&[&"convert", &"-q", &"--ignore-cid", &child, &dst]));
        qemu_compare(&dst, "vhdx", &chain.links[1], "vmdk");
    }
}

/// The dynamic header's checksum after a patch (VHD: one's complement of the byte sum).
fn reseal_vhd_header(bytes: &mut [u8], at: usize) {
    bytes[at + 36..at + 40].fill(0);
    let sum = bytes[at..at + 1024]
        .iter()
        .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    bytes[at + 36..at + 40].copy_from_slice(&(!sum).to_be_bytes());
}

#[test]
fn damaged_parent_locators_are_named() {
    if !have_tools() {
        return;
    }
    let chain = qemu_chain();
    let out = tempdir();

    // VHD: the first locator's data pointed past the end of the file.
    let (vhd, _) = keep_chain(&chain.links[1], "disk.vhd", &[]);
    let child = vhd.path().join("disk-000001.vhd");
    let mut bytes = fs::read(&child).unwrap();
    bytes[512 + 576 + 16..512 + 576 + 24].copy_from_slice(&(1u64 << 40).to_be_bytes());
    reseal_vhd_header(&mut bytes, 512);
    fs::write(&child, &bytes).unwrap();
    expect_failure(
        &child,
        out.path(),
        3,
        &["VHD parent locator at offset 1088", "W2ru"],
    );
    let c = json(&vdconv(&[&"check", &"--json", &child]));
    let rules: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["vhd-parent-locator"]);

    // VHDX: a parent locator item with no entries.
    let (vhdx, _) = keep_chain(&chain.links[1], "disk.vhdx", &[]);
    let child = vhdx.path().join("disk-000001.avhdx");
    let mut bytes = fs::read(&child).unwrap();
    let meta = 2 << 20;
    let count = u16::from_le_bytes([bytes[meta + 10], bytes[meta + 11]]) as usize;
    let locator = vdconv::vhdx::format::PARENT_LOCATOR;
    let entry = (0..count)
        .map(|i| meta + 32 + 32 * i)
        .find(|&e| bytes[e..e + 16] == locator)
        .expect("a parent locator entry");
    let item =
        meta + u32::from_le_bytes(bytes[entry + 16..entry + 20].try_into().unwrap()) as usize;
    bytes[item + 18..item + 20].fill(0);
    fs::write(&child, &bytes).unwrap();
    expect_failure(
        &child,
        out.path(),
        3,
        &["VHDX parent locator", "0 key-value entries"],
    );
    let o = vdconv(&[&"convert", &"--json", &child, &out.path().join("x.vhdx")]);
    assert_eq!(json(&o)["error"]["rule"], "vhdx-parent-locator");
    let c = json(&vdconv(&[&"check", &"--json", &child]));
    let rules: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["vhdx-parent-locator"]);
}
