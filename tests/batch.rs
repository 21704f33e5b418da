//! `vdconv batch`: a 40-item plan of qemu-made VMDKs of every hosted layout (3 items
//! broken), converted and checked against qemu-img and libvhdi; run again (all skipped);
//! split by --shard and through GNU parallel (the same bytes); killed half-way and run
//! again (nothing lost, nothing partial); stopped by SIGTERM (reported, re-raised).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// Fixed for every run that is compared byte for byte.
const EPOCH: &str = "1700000000";

const LAYOUTS: [&str; 4] = [
    "",
    "subformat=streamOptimized",
    "subformat=twoGbMaxExtentSparse",
    "subformat=monolithicFlat",
];

/// Lines holding broken items, and the error kind each must report.
const BROKEN: [(u64, &str); 3] = [(10, "missing-file"), (20, "truncated"), (30, "usage")];

/// One good item: the raw disk it was made from, its output and qemu's name for the
/// output's format.
struct Good {
    line: u64,
    raw: PathBuf,
    dst: PathBuf,
    qemu_format: &'static str,
}

struct Corpus {
    dir: tempfile::TempDir,
    good: Vec<Good>,
}

impl Corpus {
    fn plan(&self) -> PathBuf {
        self.dir.path().join("plan.jsonl")
    }
}

/// The output kinds items cycle through: (plan keys, extension, qemu format).
fn kind(i: usize) -> (&'static str, &'static str, &'static str) {
    match i % 5 {
        0 => ("", "vhd", "vpc"),
        1 => (r#","block_size":"1M""#, "vhdx", "vhdx"),
        2 => (r#","type":"fixed""#, "vhd", "vpc"),
        3 => (r#","type":"fixed","block_size":1048576"#, "vhdx", "vhdx"),
        _ => (r#","block_size":"512K","verify":true"#, "vhd", "vpc"),
    }
}

/// 40 lines: 37 disks of 2 to 3 MiB in the four layouts qemu-img writes, cycling
/// through five output kinds, and three broken items (a missing source, a truncated
/// sparse VMDK, a line with a bad value).
fn corpus() -> Corpus {
    let dir = tempdir();
    let d = dir.path();
    for sub in ["raw", "src", "out"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    let mut lines = Vec::new();
    let mut good = Vec::new();
    let mut i = 0usize;
    for line in 1..=40u64 {
        match line {
            10 => {
                lines.push(r#"{"source":"src/nope.vmdk","destination":"out/nope.vhd"}"#.to_string())
            }
            20 => {
                let raw = d.join("raw/cut.raw");
                patterned_raw(&raw, 2 * MIB, 99);
                let src = d.join("src/cut.vmdk");
                qemu_vmdk(&raw, &src, "");
                let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
                f.set_len(70_000).unwrap();
                lines.push(r#"{"source":"src/cut.vmdk","destination":"out/cut.vhd"}"#.to_string());
            }
            30 => lines.push(
                r#"{"source":"src/d0.vmdk","destination":"out/thin.vhd","type":"thin"}"#
                    .to_string(),
            ),
            _ => {
                let raw = d.join(format!("raw/d{i}.raw"));
                patterned_raw(&raw, 2 * MIB + (i as u64 % 3) * 512 * 1024, i as u64);
                let src = format!("src/d{i}.vmdk");
                qemu_vmdk(&raw, &d.join(&src), LAYOUTS[i % 4]);
                let (keys, ext, qemu_format) = kind(i);
                let dst = format!("out/d{i}.{ext}");
                lines.push(format!(
                    r#"{{"source":"{src}","destination":"{dst}","id":"vm-{i}"{keys}}}"#
                ));
                good.push(Good {
                    line,
                    raw,
                    dst: d.join(dst),
                    qemu_format,
                });
                i += 1;
            }
        }
    }
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        // The bad-value line breaks the plan schema on purpose.
        if !l.contains("thin") {
            schema::assert_valid("batch_plan_line", &v);
        }
    }
    std::fs::write(d.join("plan.jsonl"), lines.join("\n") + "\n").unwrap();
    Corpus { dir, good }
}

/// Runs `vdconv batch ARGS` with SOURCE_DATE_EPOCH set, checking every JSON line
/// against the documented schema.
fn batch(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdconv"));
    cmd.arg("batch").args(args).env("SOURCE_DATE_EPOCH", EPOCH);
    let o = cmd.output().expect("run vdconv");
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"batch"];
    all.extend_from_slice(args);
    check_documents(&all, &o);
    o
}

/// The JSON lines of a batch's stdout: (items, summary).
fn lines(stdout: &[u8]) -> (Vec<Value>, Value) {
    let mut items = Vec::new();
    let mut summary = None;
    for l in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        match v["event"].as_str() {
            Some("item") => items.push(v),
            Some("summary") => summary = Some(v),
            _ => panic!("unexpected line {l}"),
        }
    }
    (items, summary.expect("a summary line"))
}

fn count(items: &[Value], status: &str) -> usize {
    items.iter().filter(|v| v["status"] == status).count()
}

/// Every good item's output holds its raw disk, as qemu-img and libvhdi read it (one
/// python process for all of them), and its record is a documented record.
fn check_outputs(c: &Corpus) {
    let mut script = String::from(
        "import hashlib, pyvhdi, sys\nfor p in sys.argv[1:]:\n    f = pyvhdi.file()\n    f.open(p)\n    n = f.media_size\n    size = n\n    h = hashlib.sha256()\n    while n > 0:\n        b = f.read_buffer(min(1 << 20, n))\n        assert b, 'short read'\n        h.update(b)\n        n -= len(b)\n    print(size, h.hexdigest())\n",
    );
    script.push('\n');
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-c", &script];
    for g in &c.good {
        args.push(&g.dst);
    }
    let hashes = run_ok("/usr/bin/python3", &args);
    let hashes: Vec<&str> = hashes.lines().collect();
    assert_eq!(hashes.len(), c.good.len());
    for (g, seen) in c.good.iter().zip(hashes) {
        qemu_compare(&g.raw, "raw", &g.dst, g.qemu_format);
        let size = std::fs::metadata(&g.raw).unwrap().len();
        assert_eq!(
            seen,
            format!("{size} {}", file_sha256(&g.raw)),
            "libvhdi reads {} as its source",
            g.dst.display()
        );
        let record: Value =
            serde_json::from_slice(&std::fs::read(record_of(&g.dst)).unwrap()).unwrap();
        schema::assert_valid("batch_record", &record);
    }
}

fn record_of(dst: &Path) -> PathBuf {
    PathBuf::from(format!("{}.vdconv.json", dst.display()))
}

/// Names of temporary files (ours end `.tmp` and hold `.vdconv-`) anywhere under `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| n.contains(".vdconv-") && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_plan_converts_fails_per_item_skips_when_run_again_and_shards() {
    if !have_readers() {
        return;
    }
    let c = corpus();
    let plan = c.plan();
    let o = batch(&[&plan, &"-j", &"2", &"--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (items, summary) = lines(&o.stdout);
    assert_eq!(items.len(), 40);
    assert_eq!(count(&items, "converted"), 37, "{}", stdout(&o));
    assert_eq!(summary["converted"], 37);
    assert_eq!(summary["failed"], 3);
    assert_eq!(summary["jobs"], 2);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        summary["threads_per_item"],
        (cores / 2).max(1),
        "each of 2 gets a share"
    );
    for (line, kind) in BROKEN {
        let item = items.iter().find(|v| v["line"] == line).unwrap();
        assert_eq!(item["status"], "failed", "{item}");
        assert_eq!(item["error"]["kind"], kind, "line {line}: {item}");
    }
    for g in &c.good {
        let item = items.iter().find(|v| v["line"] == g.line).unwrap();
        assert_eq!(item["status"], "converted", "{item}");
        assert_eq!(
            c.dir.path().join(item["destination"].as_str().unwrap()),
            g.dst
        );
    }
    for item in items.iter().filter(|v| v["status"] == "converted") {
        let src = item["source"].as_str().unwrap();
        let n = src.trim_start_matches("src/d").trim_end_matches(".vmdk");
        assert_eq!(item["id"], format!("vm-{n}"), "the line's id is echoed");
    }
    check_outputs(&c);
    let verified = items.iter().filter(|v| v["verified"] == true).count();
    assert_eq!(
        verified, 7,
        "the verified kind's items carry verified and a digest"
    );

    // Again: every good item is skipped, nothing is rewritten.
    let before: Vec<_> = c
        .good
        .iter()
        .map(|g| std::fs::metadata(&g.dst).unwrap().modified().unwrap())
        .collect();
    let o = batch(&[&plan, &"--json"]);
    assert_eq!(o.status.code(), Some(1));
    let (items, summary) = lines(&o.stdout);
    assert_eq!(count(&items, "skipped"), 37, "{}", stdout(&o));
    assert_eq!(
        (summary["converted"].as_u64(), summary["failed"].as_u64()),
        (Some(0), Some(3))
    );
    for (g, t) in c.good.iter().zip(before) {
        assert_eq!(std::fs::metadata(&g.dst).unwrap().modified().unwrap(), t);
    }

    // Shards of 1 to 5: disjoint, covering, each line where (L - 1) mod N says.
    for n in 1..=5u64 {
        let mut seen = BTreeSet::new();
        for i in 0..n {
            let shard = format!("{i}/{n}");
            let o = batch(&[&plan, &"--shard", &shard, &"--json"]);
            let (items, summary) = lines(&o.stdout);
            assert_eq!(summary["shard"], shard);
            assert_eq!(summary["items"].as_u64().unwrap(), items.len() as u64);
            for v in &items {
                let line = v["line"].as_u64().unwrap();
                assert_eq!((line - 1) % n, i, "line {line} in shard {shard}");
                assert!(seen.insert(line), "line {line} in two shards of {n}");
                assert_ne!(v["status"], "converted", "{v}");
            }
        }
        assert_eq!(
            seen,
            (1..=40).collect::<BTreeSet<u64>>(),
            "{n} shards cover the plan"
        );
    }

    // The plan through GNU parallel, three shards side by side, into another folder:
    // the same bytes as the unsharded run.
    if !have("parallel", "the Debian package parallel") {
        return;
    }
    let other = c.dir.path().join("par");
    std::fs::create_dir_all(other.join("out")).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "\"source\":\"src/",
        &format!("\"source\":\"{}/src/", c.dir.path().display()),
    );
    std::fs::write(other.join("plan.jsonl"), text).unwrap();
    let o = Command::new("parallel")
        .args(["--will-cite", "-j", "3", "--line-buffer"])
        .arg(env!("CARGO_BIN_EXE_vdconv"))
        .args(["batch", "--json", "--shard", "{}/3"])
        .arg(other.join("plan.jsonl"))
        .args([":::", "0", "1", "2"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    // parallel's own status: how many jobs failed (each shard has a broken item).
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = stdout(&o);
    let items: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "item")
        .collect();
    assert_eq!(items.len(), 40);
    assert_eq!(count(&items, "converted"), 37);
    for g in &c.good {
        let twin = other.join("out").join(g.dst.file_name().unwrap());
        assert_eq!(
            file_sha256(&twin),
            file_sha256(&g.dst),
            "{} sharded through parallel differs from the unsharded run",
            twin.display()
        );
    }
}

/// Reads JSON lines from a running batch until `enough` item lines arrived.
fn read_items(reader: &mut impl BufRead, enough: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut line = String::new();
    while items.len() < enough {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "item" {
            items.push(v);
        }
    }
    items
}

fn spawn_batch(plan: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .args(["batch", "-j", "2", "--json"])
        .arg(plan)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_batch_killed_half_way_loses_no_finished_item_and_leaves_nothing_partial() {
    if !have_readers() {
        return;
    }
    let c = corpus();
    let mut child = spawn_batch(&c.plan());
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let before = read_items(&mut reader, 15);
    child.kill().unwrap(); // SIGKILL: no cleanup at all.
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let done: Vec<&Value> = before
        .iter()
        .filter(|v| v["status"] == "converted")
        .collect();
    assert!(done.len() >= 10, "{before:?}");
    // What was reported finished is there, whole, with its record.
    for v in &done {
        let dst = c.dir.path().join(v["destination"].as_str().unwrap());
        assert!(record_of(&dst).exists(), "{}", dst.display());
        let g = c.good.iter().find(|g| g.dst == dst).unwrap();
        qemu_compare(&g.raw, "raw", &g.dst, g.qemu_format);
    }
    // Any output at its name is whole (committed by rename): qemu reads it as its source.
    for g in &c.good {
        if g.dst.exists() {
            qemu_compare(&g.raw, "raw", &g.dst, g.qemu_format);
        }
    }

    let o = batch(&[&c.plan(), &"-j", &"2", &"--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (items, summary) = lines(&o.stdout);
    let skipped = count(&items, "skipped");
    assert!(
        skipped >= done.len(),
        "{skipped} skipped, {} were done",
        done.len()
    );
    assert_eq!(skipped + count(&items, "converted"), 37, "{}", stdout(&o));
    assert_eq!(summary["failed"], 3);
    for v in &done {
        let again = items.iter().find(|i| i["line"] == v["line"]).unwrap();
        assert_eq!(again["status"], "skipped", "{again}");
    }
    assert_eq!(temporaries(&c.dir.path().join("out")), Vec::<String>::new());
    check_outputs(&c);
}

#[test]
fn sigterm_stops_new_items_cancels_running_ones_reports_and_reraises() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let c = corpus();
    let mut child = spawn_batch(&c.plan());
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let before = read_items(&mut reader, 4);
    assert_eq!(before.len(), 4);
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "the signal is re-raised"
    );
    let summary: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    schema::assert_valid("batch_line", &summary);
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["interrupted"], true);
    let reported = before.len() + rest.lines().count() - 1;
    assert!(summary["not_started"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        reported as u64 + summary["not_started"].as_u64().unwrap(),
        40,
        "every item is reported or counted as not started"
    );
    let out = c.dir.path().join("out");
    assert_eq!(
        temporaries(&out),
        Vec::<String>::new(),
        "running items cleaned up"
    );
    for g in &c.good {
        assert_eq!(
            g.dst.exists(),
            record_of(&g.dst).exists(),
            "{}",
            g.dst.display()
        );
    }
}

#[test]
fn records_decide_what_is_converted_again() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    for (i, layout) in ["", "subformat=streamOptimized", ""].iter().enumerate() {
        let raw = d.join(format!("{i}.raw"));
        patterned_raw(&raw, MIB, 40 + i as u64);
        qemu_vmdk(&raw, &d.join(format!("{i}.vmdk")), layout);
    }
    let write_plan = |extra: &str| {
        let text = format!(
            "{}\n{}\n{}\n",
            r#"{"source":"0.vmdk","destination":"0.vhd"}"#,
            r#"{"source":"1.vmdk","destination":"1.vhdx"}"#,
            format_args!(r#"{{"source":"2.vmdk","destination":"2.vhd"{extra}}}"#),
        );
        std::fs::write(d.join("plan.jsonl"), text).unwrap();
    };
    let plan = d.join("plan.jsonl");
    let statuses = || {
        let o = batch(&[&plan, &"--json"]);
        let (items, _) = lines(&o.stdout);
        let mut s: Vec<(u64, String)> = items
            .iter()
            .map(|v| {
                (
                    v["line"].as_u64().unwrap(),
                    v["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        s.sort();
        (s.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), items, o)
    };
    // A file at a destination that vdconv did not write is never replaced unasked.
    std::fs::write(d.join("2.vhd"), b"someone else's").unwrap();
    write_plan("");
    let (s, items, o) = statuses();
    assert_eq!(s, ["converted", "converted", "failed"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        items.iter().find(|v| v["line"] == 3).unwrap()["error"]["kind"],
        "exists"
    );
    assert_eq!(std::fs::read(d.join("2.vhd")).unwrap(), b"someone else's");
    write_plan(r#","force":true"#);
    assert_eq!(statuses().0, ["skipped", "skipped", "converted"]);
    assert_eq!(
        statuses().0,
        ["skipped", "skipped", "skipped"],
        "force does not redo"
    );

    // A source touched, a record gone (the output stays vdconv's), an option changed.
    let t = std::fs::File::options()
        .append(true)
        .open(d.join("0.vmdk"))
        .unwrap();
    t.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    std::fs::remove_file(d.join("1.vhdx.vdconv.json")).unwrap();
    write_plan(r#","force":true,"type":"fixed""#);
    let (s, _, o) = statuses();
    assert_eq!(s, ["converted", "converted", "converted"]);
    assert_eq!(o.status.code(), Some(0));
    // An output cut short is made again; a verified record serves an unverified line.
    let out = std::fs::File::options()
        .write(true)
        .open(d.join("0.vhd"))
        .unwrap();
    out.set_len(4096).unwrap();
    write_plan(r#","force":true,"type":"fixed","verify":true"#);
    assert_eq!(statuses().0, ["converted", "skipped", "converted"]);
    write_plan(r#","force":true,"type":"fixed""#);
    assert_eq!(statuses().0, ["skipped", "skipped", "skipped"]);
    for (i, f) in [(0, "0.vhd"), (1, "1.vhdx"), (2, "2.vhd")] {
        let fmt = if f.ends_with('x') { "vhdx" } else { "vpc" };
        qemu_compare(&d.join(format!("{i}.raw")), "raw", &d.join(f), fmt);
    }
}

#[test]
fn plans_that_cannot_be_read_and_bad_options_are_whole_batch_errors() {
    let dir = tempdir();
    let missing = dir.path().join("none.jsonl");
    let o = vdconv(&[&"batch", &missing, &"--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "missing-file");
    let o = vdconv(&[&"batch", &dir.path(), &"--json"]);
    assert_eq!(o.status.code(), Some(3), "a folder is not a plan");
    for bad in [&["-j", "0"][..], &["--shard", "2/2"], &["--shard", "x"]] {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"batch", &missing];
        for x in bad {
            a.push(x);
        }
        assert_eq!(vdconv(&a).status.code(), Some(2), "{bad:?}");
    }
    // An empty plan is a batch of nothing: success.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let o = vdconv(&[&"batch", &empty, &"--json"]);
    assert_eq!(o.status.code(), Some(0));
    let (items, summary) = lines(&o.stdout);
    assert!(items.is_empty());
    assert_eq!(summary["items"], 0);
}

#[test]
fn a_plan_on_stdin_and_human_lines_on_stderr() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("a.raw");
    patterned_raw(&raw, MIB, 7);
    let src = dir.path().join("a.vmdk");
    qemu_vmdk(&raw, &src, "");
    let plan = format!(
        "{}\n{}\n{}\n",
        format_args!(
            r#"{{"source":"{}","destination":"{}"}}"#,
            src.display(),
            dir.path().join("a.vhd").display()
        ),
        r#"{"source":"x.vmdk","destination":"x.vhd","sparse":"sometimes"}"#,
        // Refused by convert's own rules, named by the plan's key.
        r#"{"source":"a.vmdk","destination":"y.vhd","type":"fixed","block_size":"2M"}"#
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .args(["batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), plan.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "without --json stdout stays empty");
    let err = stderr(&o);
    assert!(err.contains("vdconv: line 1: converted "), "{err}");
    assert!(
        err.contains(r#"vdconv: line 2: failed x.vmdk -> x.vhd: sparse: "sometimes" is not one of auto, always, never"#),
        "{err}"
    );
    assert!(
        err.contains(
            "vdconv: line 3: failed a.vmdk -> y.vhd: block_size: does not apply to a fixed VHD"
        ),
        "{err}"
    );
    assert!(
        err.contains("1 converted, 0 skipped, 2 failed of 3 items"),
        "{err}"
    );
    qemu_compare(&raw, "raw", &dir.path().join("a.vhd"), "vpc");
}
