//! The contract scripts rely on: one JSON error document per failure with a stable kind,
//! exit code and file; the same failure as one line without --json; progress for logs
//! and programs; destinations refused before any work; completions, man page, help.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Runs `args` with --json and without: the error document's kind, exit and file, and
/// the same failure as exactly one error line on stderr.
fn error_case(args: &[&dyn AsRef<std::ffi::OsStr>], kind: &str, exit: i32, file: &str) {
    let mut with: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
    with.push(&"--json");
    let o = vdconv(&with);
    assert_eq!(o.status.code(), Some(exit), "{kind}: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{kind}: no JSON document: {}", stdout(&o)));
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert_eq!(v["error"]["exit"], exit);
    let named = v["error"]["file"].as_str().unwrap_or_default();
    assert!(
        named.ends_with(file),
        "{kind}: file {named:?} should name {file:?}"
    );
    let message = v["error"]["message"].as_str().unwrap().to_string();
    let o = vdconv(args);
    assert_eq!(o.status.code(), Some(exit));
    assert!(o.stdout.is_empty(), "nothing on stdout without --json");
    let err = stderr(&o);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("vdconv: error: "))
        .collect();
    assert_eq!(
        errors,
        [format!("vdconv: error: {message}")],
        "{kind}: {err}"
    );
}

#[test]
fn every_error_class_has_its_kind_exit_and_file() {
    let dir = tempdir();
    let d = dir.path();
    let raw = d.join("r.raw");
    patterned_raw(&raw, 2 * MIB, 4);
    let good = d.join("good.vmdk");
    qemu_vmdk(&raw, &good, "");
    let out = d.join("out.vhd");

    error_case(
        &[
            &"convert",
            &good,
            &out,
            &"--type",
            &"dynamic",
            &"--block-size",
            &"3M",
        ],
        "usage",
        2,
        "--block-size",
    );
    error_case(&[&"convert", &good, &d.join("out.img")], "usage", 2, "");
    error_case(
        &[&"info", &d.join("absent.vmdk")],
        "missing-file",
        3,
        "absent.vmdk",
    );
    let desc = write(
        d,
        "lost.vmdk",
        b"createType=\"monolithicFlat\"\nRW 8 FLAT \"lost-flat.vmdk\" 0\n",
    );
    error_case(
        &[&"convert", &desc, &out],
        "missing-extent",
        3,
        "lost-flat.vmdk",
    );
    let outside = write(
        d,
        "out.vmdk",
        b"createType=\"monolithicFlat\"\nRW 8 FLAT \"../x\" 0\n",
    );
    error_case(&[&"info", &outside], "path-refused", 3, "out.vmdk");
    error_case(&[&"info", &d], "not-a-file", 3, d.to_str().unwrap());
    let unknown = write(d, "mystery.bin", &[0x42; 4096]);
    error_case(&[&"info", &unknown], "unsupported", 3, "mystery.bin");
    // A flat extent given instead of its descriptor.
    let flat = write(d, "pair-flat.vmdk", &[1u8; 4096]);
    let _pair = write(
        d,
        "pair.vmdk",
        b"createType=\"monolithicFlat\"\nRW 8 FLAT \"pair-flat.vmdk\" 0\n",
    );
    error_case(&[&"info", &flat], "is-extent", 3, "pair-flat.vmdk");
    let bytes = fs::read(&good).unwrap();
    let cut = write(d, "cut.vmdk", &bytes[..bytes.len() / 2]);
    error_case(&[&"convert", &cut, &out], "truncated", 3, "cut.vmdk");
    error_case(
        &[
            &"convert",
            &fixture("handmade/corrupt/gte-in-metadata.vmdk"),
            &out,
        ],
        "corrupt",
        3,
        "gte-in-metadata.vmdk",
    );
    let exists = write(d, "there.vhd", b"");
    error_case(&[&"convert", &good, &exists], "exists", 4, "there.vhd");
    let flat_desc = d.join("pair.vmdk");
    error_case(
        &[&"convert", &flat_desc, &flat, &"-O", &"vhd", &"--force"],
        "output-is-input",
        4,
        "pair-flat.vmdk",
    );
    let big = write(
        d,
        "big.vmdk",
        format!(
            "createType=\"monolithicFlat\"\nRW {} ZERO\n",
            (2041u64 << 30) / 512
        )
        .as_bytes(),
    );
    error_case(&[&"convert", &big, &out], "output-limit", 4, "");
    assert!(!out.exists());
}

#[test]
fn the_error_document_names_structure_offset_and_rule() {
    let o = vdconv(&[
        &"info",
        &"--json",
        &fixture("handmade/corrupt/gte-in-metadata.vmdk"),
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["structure"], "grain table entry");
    assert_eq!(v["error"]["rule"], "vmdk-gte-in-metadata");
    assert!(v["error"]["offset"].as_u64().is_some());
}

#[test]
fn a_usage_error_from_the_parser_is_a_json_document_too() {
    let o = vdconv(&[&"convert", &"--json", &"--sparse", &"sometimes", &"a", &"b"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
}

#[test]
fn destinations_are_refused_before_any_work() {
    let dir = tempdir();
    let d = dir.path();
    // 4 GiB, of which 96 MiB hold data: more than the 64 MiB file system below.
    let raw = d.join("r.raw");
    let f = fs::File::create(&raw).unwrap();
    f.set_len(4 << 30).unwrap();
    let mut rng = Rng::new(9);
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..96u64 {
        rng.fill(&mut buf);
        std::os::unix::fs::FileExt::write_all_at(&f, &buf, i * 32 * MIB).unwrap();
    }
    drop(f);
    let src = write(
        d,
        "r.vmdk",
        format!(
            "createType=\"monolithicFlat\"\nRW {} FLAT \"r.raw\" 0\n",
            (4u64 << 30) / 512
        )
        .as_bytes(),
    );

    // DST is a folder.
    let t = Instant::now();
    error_case(
        &[&"convert", &src, &d, &"-O", &"vhd"],
        "not-a-file",
        4,
        d.to_str().unwrap(),
    );
    assert!(t.elapsed() < Duration::from_secs(2));

    // A read-only folder (root ignores permission bits; a read-only mount does not).
    let ro = d.join("ro");
    let Some(_ro) = Tmpfs::mount(&ro, "1m") else {
        return;
    };
    run_ok("mount", &[&"-o", &"remount,ro", &ro]);
    error_case(
        &[&"convert", &src, &ro.join("x.vhd")],
        "permission-denied",
        4,
        "x.vhd",
    );

    // Too little space, fixed with every byte written, and fixed sparse with the data.
    let small = d.join("small");
    let Some(_small) = Tmpfs::mount(&small, "64m") else {
        return;
    };
    for extra in [&["--sparse", "never"][..], &[][..]] {
        let dst = small.join("x.vhd");
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"convert", &src, &dst, &"--type", &"fixed"];
        for x in extra {
            a.push(x);
        }
        let t = Instant::now();
        error_case(&a, "no-space", 4, "x.vhd");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            listing(&small).is_empty(),
            "nothing written: {:?}",
            listing(&small)
        );
    }
}

#[test]
fn a_killed_runs_temporary_file_is_removed_by_the_next_run() {
    let dir = tempdir();
    let src = write(
        dir.path(),
        "big.vmdk",
        b"createType=\"monolithicFlat\"\nRW 128849018880 ZERO\n",
    );
    let dst = dir.path().join("big.vhdx");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .args(["convert", "--verify", "-q"])
        .arg(&src)
        .arg(&dst)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while listing(dir.path()).len() < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs.
    child.wait().unwrap();
    let left = listing(dir.path());
    assert_eq!(
        left.len(),
        2,
        "the temporary file stays after SIGKILL: {left:?}"
    );
    // The next run into the same DST (a small one) removes it.
    let small = write(
        dir.path(),
        "small.vmdk",
        b"createType=\"monolithicFlat\"\nRW 2048 ZERO\n",
    );
    assert_ok(&vdconv(&[&"convert", &"-q", &small, &dst]));
    assert_eq!(listing(dir.path()), ["big.vhdx", "big.vmdk", "small.vmdk"]);
}

#[test]
fn progress_for_logs_and_for_programs() {
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 24 * MIB, 2);
    let src = dir.path().join("r.vmdk");
    qemu_vmdk(&raw, &src, "subformat=streamOptimized");
    let o = vdconv(&[
        &"convert",
        &"--progress",
        &"always",
        &"--verify",
        &src,
        &dir.path().join("a.vhdx"),
    ]);
    assert_ok(&o);
    let log = stderr(&o);
    assert!(!log.contains('\u{1b}'), "no escape codes in a log: {log:?}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains('%')).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("vdconv: converting ")
            && l.ends_with(&format!("of {} bytes)", 24 * MIB))),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("vdconv: verifying ") && l.contains("100%")),
        "{log}"
    );
    assert!(lines.len() <= 8, "at most a line every few seconds: {log}");
    assert!(
        log.contains("verified, SHA-256 "),
        "the final line says it verified: {log}"
    );

    let o = vdconv(&[
        &"convert",
        &"--progress",
        &"json",
        &src,
        &dir.path().join("b.vhdx"),
    ]);
    assert_ok(&o);
    let docs: Vec<Value> = stderr(&o)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!docs.is_empty());
    let done: Vec<u64> = docs.iter().map(|d| d["done"].as_u64().unwrap()).collect();
    assert!(done.windows(2).all(|w| w[0] < w[1]), "rising: {done:?}");
    assert_eq!(*done.last().unwrap(), 24 * MIB);
    assert!(
        docs.iter()
            .all(|d| d["total"] == 24 * MIB && d["phase"] == "convert")
    );
}

#[test]
fn completions_load_in_bash_and_the_man_page_renders() {
    let o = vdconv(&[&"completions", &"bash"]);
    assert_ok(&o);
    let dir = tempdir();
    let script = write(dir.path(), "vdconv.bash", &o.stdout);
    let shown = run_ok(
        "bash",
        &[
            &"-c",
            &format!("source {} && complete -p vdconv", script.display()),
        ],
    );
    assert!(shown.contains("vdconv"), "{shown}");
    for shell in ["zsh", "fish"] {
        assert_ok(&vdconv(&[&"completions", &shell]));
    }
    let o = vdconv(&[&"man"]);
    assert_ok(&o);
    let page = write(dir.path(), "vdconv.1", &o.stdout);
    if have("man", "the Debian package man-db") {
        let rendered = run_ok("man", &[&"-l", &page]);
        assert!(rendered.contains("vdconv"), "{rendered}");
        assert!(rendered.contains("convert"), "{rendered}");
    }
}

#[test]
fn every_argument_has_a_sentence_in_help() {
    for (command, names) in [
        ("convert", &["<SRC>", "<DST>"][..]),
        ("info", &["<IMG>"][..]),
        ("check", &["<IMG>"][..]),
        ("compare", &["<A>", "<B>"][..]),
        ("batch", &["<PLAN>"][..]),
    ] {
        let o = vdconv(&[&command, &"-h"]);
        assert_ok(&o);
        let help = stdout(&o);
        for name in names {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("{command}: no {name} in {help}"));
            assert!(
                line.trim().len() > name.len() + 10,
                "{command} {name} has no sentence: {line:?}"
            );
        }
        // Options too: every line starting with - has text after the flag.
        for l in help.lines().filter(|l| l.trim_start().starts_with('-')) {
            let words = l.split_whitespace().count();
            assert!(words >= 3, "{command}: option without a sentence: {l:?}");
        }
    }
}

#[test]
fn options_that_do_not_apply_are_refused() {
    let dir = tempdir();
    let src = fixture("handmade/stream-footer-padded.vmdk");
    for (dst, args, option) in [
        (
            "a.vhd",
            &["--logical-sector", "4096"][..],
            "--logical-sector",
        ),
        (
            "a.vhd",
            &["--type", "fixed", "--block-size", "2M"][..],
            "--block-size",
        ),
        (
            "a.vhdx",
            &["--type", "fixed", "--block-size", "3M"][..],
            "--block-size",
        ),
        (
            "a.vhd",
            &["--in-place", "--sparse", "never"][..],
            "--sparse",
        ),
    ] {
        let out = dir.path().join(dst);
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"--json", &src, &out];
        for x in args {
            a.push(x);
        }
        let o = vdconv(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["error"]["file"], option, "{args:?}");
        assert!(!out.exists());
    }
}

#[test]
fn docs_list_every_rule_and_error_kind() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md")).unwrap();
    for rule in vdconv::rules::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            rule.id,
            rule.severity.name(),
            rule.summary
        );
        assert!(doc.contains(&row), "docs/json.md lacks the row: {row}");
    }
    let documented = doc
        .lines()
        .filter(|l| {
            l.starts_with("| `")
                && ["must", "should", "habit"]
                    .iter()
                    .any(|s| l.contains(&format!("` | {s} |")))
        })
        .count();
    assert_eq!(
        documented,
        vdconv::rules::ALL.len(),
        "rows for rules that no longer exist"
    );
    for kind in vdconv::ErrorKind::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", kind.name())),
            "docs/json.md lacks kind {}",
            kind.name()
        );
        let json = serde_json::to_value(kind).unwrap();
        assert_eq!(json, kind.name(), "serde name and name() agree");
    }
}
