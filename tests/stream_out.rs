//! DST `-`: the image on stdout, forward. With SOURCE_DATE_EPOCH set it is byte for byte
//! the file `convert SRC FILE` writes, for every output kind; libvhdi and qemu-img read
//! what went through the pipe as the source; what a stream cannot honour is refused.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const EPOCH: &str = "1700000000";

/// Runs `vdconv convert SRC - ARGS` with stdout into `out`; returns stderr and status.
fn to_stdout(src: &Path, args: &[&str], out: &Path, epoch: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdconv"));
    cmd.arg("convert").arg(src).arg("-").args(args);
    if epoch {
        cmd.env("SOURCE_DATE_EPOCH", EPOCH);
    }
    cmd.stdout(File::create(out).unwrap()).output().unwrap()
}

fn to_file(src: &Path, args: &[&str], out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .arg("convert")
        .arg(src)
        .arg(out)
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert_ok(&o);
}

/// The kinds a stream writes: (name, options, qemu format).
const KINDS: [(&str, &[&str], &str); 7] = [
    ("fixed VHD", &["-O", "vhd", "--type", "fixed"], "vpc"),
    ("dynamic VHD", &["-O", "vhd"], "vpc"),
    (
        "dynamic VHD, 512 KiB blocks",
        &["-O", "vhd", "--block-size", "512K"],
        "vpc",
    ),
    ("dynamic VHDX", &["-O", "vhdx"], "vhdx"),
    (
        "dynamic VHDX, 1 MiB blocks",
        &["-O", "vhdx", "--block-size", "1M"],
        "vhdx",
    ),
    ("fixed VHDX", &["-O", "vhdx", "--type", "fixed"], "vhdx"),
    ("Azure (rounded up)", &["--target", "azure"], "vpc"),
];

#[test]
fn the_stream_is_the_file_byte_for_byte_and_reads_as_the_source() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    // Not a whole MiB (the last chunk and block are partial; Azure rounds it up), with
    // data, text, zeros and holes.
    let raw = d.join("disk.raw");
    patterned_raw(&raw, 20 * MIB + 12800, 3);
    let (raw_size, raw_hash) = (std::fs::metadata(&raw).unwrap().len(), file_sha256(&raw));
    for (layout, options) in [("stream", "subformat=streamOptimized"), ("sparse", "")] {
        let src = d.join(format!("{layout}.vmdk"));
        qemu_vmdk(&raw, &src, options);
        for (name, args, qemu_format) in KINDS {
            let file = d.join("file.img");
            let piped = d.join("piped.img");
            let _ = std::fs::remove_file(&file);
            to_file(&src, args, &file);
            let o = to_stdout(&src, args, &piped, true);
            assert_ok(&o);
            assert!(
                stderr(&o).contains("vdconv: wrote -"),
                "the closing line goes to stderr: {}",
                stderr(&o)
            );
            assert_eq!(
                file_sha256(&piped),
                file_sha256(&file),
                "{layout} -> {name}: the stream differs from the file"
            );
            qemu_compare(&raw, "raw", &piped, qemu_format);
            if !args.contains(&"azure") {
                assert_eq!(
                    libvhdi_sha256(&piped),
                    (raw_size, raw_hash.clone()),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn without_a_fixed_time_the_ids_differ_but_not_the_contents() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("disk.raw");
    patterned_raw(&raw, 4 * MIB, 8);
    let src = dir.path().join("disk.vmdk");
    qemu_vmdk(&raw, &src, "subformat=streamOptimized");
    let (a, b) = (dir.path().join("a.vhdx"), dir.path().join("b.vhdx"));
    assert_ok(&to_stdout(&src, &["-O", "vhdx"], &a, false));
    assert_ok(&to_stdout(&src, &["-O", "vhdx"], &b, false));
    assert_ne!(file_sha256(&a), file_sha256(&b), "random ids");
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        std::fs::metadata(&b).unwrap().len()
    );
    for f in [&a, &b] {
        qemu_compare(&raw, "raw", f, "vhdx");
        assert_eq!(libvhdi_sha256(f).1, file_sha256(&raw));
        let o = vdconv(&[&"check", f]);
        assert_ok(&o);
    }
}

#[test]
fn through_a_pipe_with_progress_and_messages_kept_off_stdout() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("disk.raw");
    patterned_raw(&raw, 6 * MIB, 9);
    let src = dir.path().join("disk.vmdk");
    qemu_vmdk(&raw, &src, "");
    let file = dir.path().join("file.vhd");
    to_file(&src, &["-O", "vhd"], &file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .args(["convert", "-v", "--progress", "always", "-O", "vhd"])
        .arg(&src)
        .arg("-")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    assert_eq!(
        bytes_sha256(&got),
        file_sha256(&file),
        "only the image on stdout"
    );
    assert!(!stderr(&o).is_empty(), "progress and -v went to stderr");
}

#[test]
fn a_receiver_that_goes_away_is_a_failure_not_a_quiet_end() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("disk.raw");
    patterned_raw(&raw, 16 * MIB, 10);
    let src = dir.path().join("disk.vmdk");
    qemu_vmdk(&raw, &src, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .args(["convert", "-O", "vhd", "--type", "fixed"])
        .arg(&src)
        .arg("-")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 1000];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap(); // then closed
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("incomplete image"), "{}", stderr(&o));
}

#[test]
fn what_a_stream_cannot_honour_is_refused() {
    let dir = tempdir();
    let src = fixture("handmade/stream-footer-padded.vmdk");
    let out = dir.path().join("out");
    for (args, option) in [
        (&["-O", "vhd", "--verify"][..], "--verify"),
        (&["-O", "vhd", "--json"], "--json"),
        (
            &["-O", "vhd", "--type", "fixed", "--sparse", "never"],
            "--sparse",
        ),
        (&["-O", "vhd", "--in-place"], "--in-place"),
        (
            &["-O", "vhd", "--type", "fixed", "--reflink", "always"],
            "--reflink",
        ),
        (&[], "give -O vhd or -O vhdx"),
    ] {
        let o = to_stdout(&src, args, &out, false);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(option), "{args:?}: {}", stderr(&o));
        let printed = std::fs::read(&out).unwrap();
        if option == "--json" {
            // --json asked for an error document on stdout; no image was begun.
            let v: serde_json::Value = serde_json::from_slice(&printed).unwrap();
            schema::assert_valid("error", &v);
        } else {
            assert!(printed.is_empty(), "nothing on stdout: {args:?}");
        }
    }
}

/// An 8 TiB disk holding 3 MiB, to a VHDX in 1 MiB blocks (a 64 MiB BAT) with
/// reproducible ids: the ids are seeded from the data alone, so neither the file nor the
/// stream hashes 8 TiB of zeros (that took over an hour), and the stream's memory stays
/// small. Stream and file are the same bytes; qemu-io reads the data back where it was
/// written.
#[test]
fn an_8_tib_disk_with_3_mib_of_data_streams_reproducibly_in_seconds_and_small_memory() {
    if !(have_readers() & have("qemu-io", "the Debian package qemu-utils")) {
        return;
    }
    assert!(
        have("/usr/bin/time", "the Debian package time"),
        "/usr/bin/time measures peak memory"
    );
    let dir = tempdir();
    let src = dir.path().join("big.vmdk");
    assert_ok(&run(
        "qemu-img",
        &[&"create", &"-q", &"-f", &"vmdk", &src, &"8T"],
    ));
    let writes = [("0x5a", "0"), ("0xa5", "4T"), ("0x33", "8191G")];
    let mut io: Vec<String> = vec!["-f".into(), "vmdk".into()];
    for (pattern, at) in writes {
        io.extend(["-c".into(), format!("write -P {pattern} {at} 1M")]);
    }
    let io_args: Vec<&dyn AsRef<std::ffi::OsStr>> = io
        .iter()
        .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
        .chain([&src as &dyn AsRef<std::ffi::OsStr>])
        .collect();
    assert_ok(&run("qemu-io", &io_args));
    let opts = ["-O", "vhdx", "--block-size", "1M"];

    let file = dir.path().join("file.vhdx");
    let started = std::time::Instant::now();
    to_file(&src, &opts, &file);
    let file_time = started.elapsed();

    let stream = dir.path().join("stream.vhdx");
    let rss = dir.path().join("rss");
    let started = std::time::Instant::now();
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(env!("CARGO_BIN_EXE_vdconv"))
        .arg("convert")
        .arg(&src)
        .arg("-")
        .args(opts)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdout(File::create(&stream).unwrap())
        .output()
        .unwrap();
    let stream_time = started.elapsed();
    assert_ok(&o);
    let rss_kib: u64 = std::fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap();
    eprintln!("file {file_time:?}, stream {stream_time:?}, stream peak RSS {rss_kib} KiB");
    // Seconds here; hashing every byte took over an hour. The bound tells the two apart.
    assert!(file_time.as_secs() < 120, "file: {file_time:?}");
    assert!(stream_time.as_secs() < 120, "stream: {stream_time:?}");
    // The front is 64 MiB (kept in a temporary file past 32 MiB).
    assert!(rss_kib < 40 * 1024, "stream peak RSS {rss_kib} KiB");
    assert_eq!(
        file_sha256(&stream),
        file_sha256(&file),
        "stream and file differ"
    );

    let mut check: Vec<String> = vec!["-f".into(), "vhdx".into()];
    for (pattern, at) in writes {
        check.extend(["-c".into(), format!("read -P {pattern} {at} 1M")]);
    }
    check.extend(["-c".into(), "read -P 0 1M 1M".into()]);
    let check_args: Vec<&dyn AsRef<std::ffi::OsStr>> = check
        .iter()
        .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
        .chain([&stream as &dyn AsRef<std::ffi::OsStr>])
        .collect();
    let read = run("qemu-io", &check_args);
    assert_ok(&read);
    let out = String::from_utf8_lossy(&read.stdout);
    assert_eq!(out.matches("read 1048576/1048576").count(), 4, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
}

/// The one-pass reader (a streamOptimized VMDK through a pipe) seeds reproducible ids as
/// `convert` does from the file: with SOURCE_DATE_EPOCH both write the same bytes.
#[test]
fn a_stream_vmdk_through_a_pipe_gives_the_files_bytes() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("src.raw");
    patterned_raw(&raw, 24 * MIB, 11);
    let src = dir.path().join("src.vmdk");
    qemu_vmdk(&raw, &src, "subformat=streamOptimized");
    for (name, format) in [("vhdx", "vhdx"), ("vhd", "vpc")] {
        let file = dir.path().join(format!("file.{name}"));
        to_file(&src, &["-O", name], &file);
        let piped = dir.path().join(format!("piped.{name}"));
        let o = Command::new(env!("CARGO_BIN_EXE_vdconv"))
            .arg("convert")
            .arg("-")
            .arg(&piped)
            .args(["-O", name])
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .stdin(File::open(&src).unwrap())
            .output()
            .unwrap();
        assert_ok(&o);
        assert_eq!(file_sha256(&piped), file_sha256(&file), "{name}");
        qemu_compare(&raw, "raw", &piped, format);
    }
}
