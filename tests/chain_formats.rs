//! The snapshot-chain formats no open tool writes, read on their own before the chain
//! assembly uses them:
//! - fixtures/make_deltas.py lays out a base ← COWD ← seSparse chain; qemu-img must read
//!   exactly what the script says it laid out, and so must our COWD and seSparse readers,
//!   stacked on each other in the test;
//! - VHDX logs built here byte by byte from MS-VHDX: our in-memory replay must give the
//!   bytes qemu's own replay (`qemu-img check -r all`, on a copy) writes, and hostile
//!   logs must fail as corruption errors naming the file, structure and offset, quickly.

mod common;
#[path = "common/vhdx_log.rs"]
mod vhdx_log;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vdconv::Error;
use vdconv::disk::InputFile;
use vdconv::disk::{Run, RunKind};
use vdconv::vhdx::format::{HEADER1_OFFSET, HEADER2_OFFSET, Header, KIB, MIB, seal};
use vdconv::vhdx::log::{LogOverlay, fuzz_vhdx_log};
use vdconv::vhdx::read::{current_header, read_meta};
use vdconv::vmdk::cowd::CowdExtent;
use vdconv::vmdk::sesparse::SeSparseExtent;
use vhdx_log::*;
use zerocopy::{FromBytes, IntoBytes};

// ---------------------------------------------------------------------------------------
// COWD and seSparse: the generator, qemu-img, our readers

/// The generated chain in a temporary folder, and whether qemu-img made its base.
struct Chain {
    dir: tempfile::TempDir,
    manifest: Value,
    qemu: bool,
}

impl Chain {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, link: &str, key: &str) -> std::path::PathBuf {
        self.path(self.manifest[link][key].as_str().unwrap())
    }

    fn size(&self) -> u64 {
        self.manifest["size"].as_u64().unwrap()
    }

    fn runs(&self, link: &str) -> Vec<(u64, u64, String)> {
        self.manifest[link]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["offset"].as_u64().unwrap(),
                    r["len"].as_u64().unwrap(),
                    r["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// Runs the generator; the base is qemu-img's when qemu-img is there (in CI it must be),
/// the script's own monolithicFlat otherwise. None without python3.
fn generate() -> Option<Chain> {
    if !have("python3", "the Debian package python3") {
        return None;
    }
    let qemu = have("qemu-img", "the Debian package qemu-utils");
    let dir = tempdir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/make_deltas.py");
    let base = if qemu { "qemu" } else { "flat" };
    run_ok("python3", &[&script, &dir.path(), &"--base", &base]);
    let manifest = serde_json::from_str(&read_to_string(&dir.path().join("manifest.json")))
        .expect("manifest.json");
    Some(Chain {
        dir,
        manifest,
        qemu,
    })
}

/// qemu-img's raw rendering of an image. (Compared as bytes: hashing 40 MiB in an
/// unoptimised test build takes seconds.)
fn qemu_raw(path: &Path, format: &str, scratch: &Path) -> Vec<u8> {
    let raw = scratch.join("qemu-render.raw");
    let _ = fs::remove_file(&raw);
    run_ok(
        "qemu-img",
        &[&"convert", &"-f", &format, &"-O", &"raw", &path, &raw],
    );
    let bytes = fs::read(&raw).unwrap();
    fs::remove_file(&raw).unwrap();
    bytes
}

fn kind_name(k: RunKind) -> &'static str {
    match k {
        RunKind::Parent => "parent",
        RunKind::Zero => "zero",
        RunKind::Data => "data",
    }
}

fn named(runs: &[Run]) -> Vec<(u64, u64, String)> {
    runs.iter()
        .map(|r| (r.offset, r.len, kind_name(r.kind).to_string()))
        .collect()
}

/// Reads `[0, size)` through `read` in pieces of changing, unaligned sizes, so reads
/// start and end inside grains and tables.
fn flatten(size: u64, mut read: impl FnMut(u64, &mut [u8])) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    let pieces = [1 << 20, 13_000, 1536, 70_001, 4096, 3 << 20];
    let mut at = 0u64;
    let mut i = 0;
    while at < size {
        let n = (pieces[i % pieces.len()] as u64).min(size - at);
        read(at, &mut out[at as usize..(at + n) as usize]);
        at += n;
        i += 1;
    }
    out
}

#[test]
fn qemu_reads_the_generated_chain_as_laid_out() {
    let Some(chain) = generate() else { return };
    if !chain.qemu {
        return;
    }
    for link in ["cowd", "sesparse"] {
        let vmdk = chain.file(link, "vmdk");
        // qemu follows parentFileNameHint and checks each parentCID on the way down.
        let info = run_ok("qemu-img", &[&"info", &"--backing-chain", &vmdk]);
        assert!(info.contains("base.vmdk"), "{info}");
        qemu_compare(&vmdk, "vmdk", &chain.file(link, "expected"), "raw");
        let expected = fs::read(chain.file(link, "expected")).unwrap();
        assert_eq!(expected.len() as u64, chain.size());
        assert!(
            qemu_raw(&vmdk, "vmdk", chain.dir.path()) == expected,
            "qemu reads {link} otherwise"
        );
    }
}

#[test]
fn cowd_reader_maps_and_reads_the_generated_delta_as_laid_out() {
    let Some(chain) = generate() else { return };
    let size = chain.size();
    let file = InputFile::open(&chain.file("cowd", "extent")).unwrap();
    let mut cowd = CowdExtent::open(file, size).unwrap();
    assert!(cowd.warnings.is_empty(), "{:?}", cowd.warnings);
    let mut runs = Vec::new();
    cowd.map(0, size, 0, &mut runs).unwrap();
    assert_eq!(named(&runs), chain.runs("cowd"));

    let base = fs::read(chain.file("base", "raw")).unwrap();
    let flat = flatten(size, |at, buf| {
        cowd.read_at(at, buf, &mut |p, b| {
            b.copy_from_slice(&base[p as usize..p as usize + b.len()]);
            Ok(())
        })
        .unwrap()
    });
    let expected = fs::read(chain.file("cowd", "expected")).unwrap();
    assert!(flat == expected, "COWD flattened over the base differs");
    if chain.qemu {
        let qemu = qemu_raw(&chain.file("cowd", "vmdk"), "vmdk", chain.dir.path());
        assert!(flat == qemu, "qemu reads the COWD chain otherwise");
    }
}

#[test]
fn sesparse_reader_stacked_on_the_cowd_reader_reads_the_chain_as_laid_out() {
    let Some(chain) = generate() else { return };
    let size = chain.size();
    let mut se = SeSparseExtent::open(
        InputFile::open(&chain.file("sesparse", "extent")).unwrap(),
        size,
    )
    .unwrap();
    assert!(se.warnings.is_empty(), "{:?}", se.warnings);
    let mut runs = Vec::new();
    se.map(0, size, 0, &mut runs).unwrap();
    assert_eq!(named(&runs), chain.runs("sesparse"));
    // Every state the format has is in the map.
    for kind in [RunKind::Parent, RunKind::Zero, RunKind::Data] {
        assert!(runs.iter().any(|r| r.kind == kind), "{kind:?}");
    }

    let mut cowd = CowdExtent::open(
        InputFile::open(&chain.file("cowd", "extent")).unwrap(),
        size,
    )
    .unwrap();
    let base = fs::read(chain.file("base", "raw")).unwrap();
    let flat = flatten(size, |at, buf| {
        se.read_at(at, buf, &mut |p, b| {
            cowd.read_at(p, b, &mut |q, c| {
                c.copy_from_slice(&base[q as usize..q as usize + c.len()]);
                Ok(())
            })
        })
        .unwrap()
    });
    let expected = fs::read(chain.file("sesparse", "expected")).unwrap();
    assert!(flat == expected, "seSparse ← COWD ← base differs");
    if chain.qemu {
        let qemu = qemu_raw(&chain.file("sesparse", "vmdk"), "vmdk", chain.dir.path());
        assert!(flat == qemu, "qemu reads the seSparse chain otherwise");
    }
}

#[test]
fn generated_extents_survive_the_fuzz_entry_points() {
    let Some(chain) = generate() else { return };
    let cowd = fs::read(chain.file("cowd", "extent")).unwrap();
    let se = fs::read(chain.file("sesparse", "extent")).unwrap();
    vdconv::vmdk::cowd::fuzz_cowd(&cowd);
    vdconv::vmdk::sesparse::fuzz_sesparse(&se);
    // Each format's bytes given to the other reader.
    vdconv::vmdk::cowd::fuzz_cowd(&se);
    vdconv::vmdk::sesparse::fuzz_sesparse(&cowd);
}

// ---------------------------------------------------------------------------------------
// VHDX log: entries built from MS-VHDX 2.3.1

fn have_qemu_io() -> bool {
    have("qemu-img", "the Debian package qemu-utils")
        && have("qemu-io", "the Debian package qemu-utils")
}

#[test]
fn vhdx_log_replays_in_memory_as_qemu_replays_it() {
    if !have_qemu_io() {
        return;
    }
    let dir = tempdir();
    let t = dir.path().join("t.vhdx");
    run_ok(
        "qemu-img",
        &[
            &"create",
            &"-q",
            &"-f",
            &"vhdx",
            &"-o",
            &"log_size=1M,block_size=1M",
            &t,
            &"16M",
        ],
    );
    run_ok(
        "qemu-io",
        &[
            &"-f",
            &"vhdx",
            &"-c",
            &"write -q -P 0x11 0 2M",
            &"-c",
            &"write -q -P 0x22 5M 1M",
            &"-c",
            &"write -q -P 0x33 9M 512k",
            &t,
        ],
    );
    let meta = read_meta(&InputFile::open(&t).unwrap()).unwrap();
    let (log_offset, log_len) = (meta.log_offset, meta.log_length);
    let mut image = fs::read(&t).unwrap();
    let file_len = image.len() as u64;
    let bat = meta.bat_offset as usize;
    let bat_entry = |image: &[u8], block: usize| {
        u64::from_le_bytes(
            image[bat + 8 * block..bat + 8 * block + 8]
                .try_into()
                .unwrap(),
        )
    };
    let block9 = (bat_entry(&image, 9) >> 20) << 20;
    assert_eq!(bat_entry(&image, 9) & 7, 6, "block 9 fully present");
    // BAT page 0 as the log will have it: block 0 ZERO, block 5 NOT_PRESENT.
    let mut bat_page = image[bat..bat + PAGE].to_vec();
    bat_page[0..8].copy_from_slice(&2u64.to_le_bytes());
    bat_page[40..48].copy_from_slice(&0u64.to_le_bytes());

    // e0 (before the tail, superseded by e1), e1 (the tail), e2 (the head).
    let e0 = entry(&EntrySpec {
        guid: GUID,
        sequence: 10,
        tail: 0,
        flushed: file_len,
        last: file_len,
        descriptors: &[Desc::Data {
            offset: meta.bat_offset,
            page: vec![0xFF; PAGE],
        }],
    });
    let e1_at = e0.len() as u32;
    let e1 = entry(&EntrySpec {
        guid: GUID,
        sequence: 11,
        tail: e1_at,
        flushed: file_len,
        last: file_len,
        descriptors: &[Desc::Data {
            offset: meta.bat_offset,
            page: bat_page.clone(),
        }],
    });
    // In block 9's payload: a page of 0x99, then zeros over it and the next page (the
    // zero descriptor comes later, so it wins); past the end of the file, a page that
    // extends it.
    let e2 = entry(&EntrySpec {
        guid: GUID,
        sequence: 12,
        tail: e1_at,
        flushed: file_len,
        last: file_len + MIB,
        descriptors: &[
            Desc::Data {
                offset: block9 + 64 * KIB,
                page: page(0x99),
            },
            Desc::Zero {
                offset: block9 + 64 * KIB,
                len: 8 * KIB,
            },
            Desc::Data {
                offset: file_len,
                page: page(0x77),
            },
        ],
    });
    let e2_at = u64::from(e1_at) + e1.len() as u64;
    place(&mut image, log_offset, log_len, 0, &e0);
    place(&mut image, log_offset, log_len, u64::from(e1_at), &e1);
    place(&mut image, log_offset, log_len, e2_at, &e2);
    // Stale entries both readers must pass over: another LogGuid, and a damaged CRC.
    let mut other = entry(&EntrySpec {
        guid: [7; 16],
        sequence: 13,
        tail: 0,
        flushed: file_len,
        last: file_len,
        descriptors: &[],
    });
    place(&mut image, log_offset, log_len, 256 * KIB, &other);
    other = entry(&EntrySpec {
        guid: GUID,
        sequence: 50,
        tail: (300 * KIB) as u32,
        flushed: file_len,
        last: file_len,
        descriptors: &[],
    });
    other[100] ^= 1;
    place(&mut image, log_offset, log_len, 300 * KIB, &other);
    set_log_guid(&mut image, GUID);
    fs::write(&t, &image).unwrap();

    // Our replay, in memory: the file is left as it is.
    let file = InputFile::open(&t).unwrap();
    let (_, header) = current_header(&file).unwrap();
    assert_eq!(header.log_guid, GUID);
    let overlay = LogOverlay::replay(&file, log_offset, log_len, header.log_guid)
        .unwrap()
        .expect("a log to replay");
    assert_eq!(overlay.entries(), 2, "replay starts at the tail (e1)");
    assert_eq!(overlay.sequence_number(), 12);
    assert_eq!(overlay.len(), file_len + MIB, "grown to LastFileOffset");
    assert_eq!(fs::read(&t).unwrap(), image, "the file is not written");
    let mut ours = vec![0u8; overlay.len() as usize];
    overlay.read(&file, 0, &mut ours).unwrap();

    // qemu's replay, on a copy.
    let q = dir.path().join("q.vhdx");
    fs::copy(&t, &q).unwrap();
    let o = run("qemu-img", &[&"check", &"-r", &"all", &q]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let replayed = fs::read(&q).unwrap();
    let (_, qh) = current_header(&InputFile::open(&q).unwrap()).unwrap();
    assert_eq!(qh.log_guid, [0; 16], "qemu replayed and cleared the log");

    // Byte for byte, but for the headers qemu rewrote. (qemu grows the file only to the
    // last page written: its rounding to LastFileOffset applies to unaligned values.)
    let common = replayed.len().min(ours.len());
    assert!(replayed.len() as u64 >= file_len + 4 * KIB);
    for (i, (a, b)) in ours[..common].iter().zip(&replayed[..common]).enumerate() {
        let in_headers = (64 * KIB as usize..192 * KIB as usize).contains(&i);
        assert!(in_headers || a == b, "byte {i}: ours {a:#x}, qemu's {b:#x}");
    }
    assert!(ours[common..].iter().all(|&b| b == 0));
    assert_eq!(&ours[bat..bat + PAGE], &bat_page[..]);

    // Our replay written out with the log cleared reads as qemu's replay does.
    let mine = dir.path().join("mine.vhdx");
    let mut out = ours.clone();
    let hdr = |at: u64| out[at as usize..at as usize + 4096].to_vec();
    let (h1, h2) = (hdr(HEADER1_OFFSET), hdr(HEADER2_OFFSET));
    for (at, bytes) in [(HEADER1_OFFSET, h1), (HEADER2_OFFSET, h2)] {
        let mut h = Header::read_from_bytes(&bytes).unwrap();
        h.log_guid = [0; 16];
        seal(h.as_mut_bytes());
        out[at as usize..at as usize + 4096].copy_from_slice(h.as_bytes());
    }
    fs::write(&mine, &out).unwrap();
    qemu_compare(&mine, "vhdx", &q, "vhdx");

    // And what the guest sees after replay is what the entries say.
    let raw = dir.path().join("q.raw");
    run_ok(
        "qemu-img",
        &[&"convert", &"-f", &"vhdx", &"-O", &"raw", &q, &raw],
    );
    let disk = fs::read(&raw).unwrap();
    let at = |mib: u64, kib: u64| (mib * MIB + kib * KIB) as usize;
    assert!(disk[..at(1, 0)].iter().all(|&b| b == 0), "block 0 is ZERO");
    assert!(disk[at(1, 0)..at(2, 0)].iter().all(|&b| b == 0x11));
    assert!(
        disk[at(5, 0)..at(6, 0)].iter().all(|&b| b == 0),
        "block 5 NOT_PRESENT"
    );
    assert!(disk[at(9, 0)..at(9, 64)].iter().all(|&b| b == 0x33));
    assert!(
        disk[at(9, 64)..at(9, 72)].iter().all(|&b| b == 0),
        "zeroed after the page"
    );
    assert!(disk[at(9, 72)..at(9, 512)].iter().all(|&b| b == 0x33));
}

/// A 3 MiB file with a 1 MiB log at 1 MiB holding `entries` at their offsets.
fn synthetic(dir: &Path, entries: &[(u64, Vec<u8>)]) -> InputFile {
    let mut image = vec![0u8; 3 * MIB as usize];
    for (at, e) in entries {
        place(&mut image, MIB, MIB, *at, e);
    }
    let p = dir.join(format!("log-{}.bin", entries.len()));
    fs::write(&p, &image).unwrap();
    InputFile::open(&p).unwrap()
}

fn spec(sequence: u64, tail: u32, descriptors: &[Desc]) -> EntrySpec<'_> {
    EntrySpec {
        guid: GUID,
        sequence,
        tail,
        flushed: 3 * MIB,
        last: 3 * MIB,
        descriptors,
    }
}

fn data(offset: u64, byte: u8) -> Desc {
    Desc::Data {
        offset,
        page: page(byte),
    }
}

fn replay(file: &InputFile) -> Result<Option<LogOverlay>, Error> {
    LogOverlay::replay(file, MIB, MIB, GUID)
}

fn read(overlay: &LogOverlay, file: &InputFile, offset: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    overlay.read(file, offset, &mut b).unwrap();
    b
}

#[test]
fn log_replay_follows_the_specification() {
    let dir = tempdir();
    // Nothing to replay without a LogGuid, whatever the log holds.
    let f = synthetic(dir.path(), &[]);
    assert!(LogOverlay::replay(&f, MIB, MIB, [0; 16]).unwrap().is_none());

    // A sequence wrapping around the end of the log; the older entry before its tail is
    // not replayed, and later entries replace earlier pages.
    let e0 = entry(&spec(4, (MIB - 4 * KIB) as u32, &[data(2 * MIB, 0xA0)]));
    let e1 = entry(&spec(
        5,
        (MIB - 4 * KIB) as u32,
        &[data(2 * MIB, 0xA1), data(2 * MIB + 8192, 0xB1)],
    ));
    let e2 = entry(&spec(
        6,
        (MIB - 4 * KIB) as u32,
        &[data(2 * MIB + 8192, 0xB2)],
    ));
    let e1_at = MIB - 4 * KIB;
    let e2_at = (e1_at + e1.len() as u64) % MIB;
    // e0 lies before e1 but not next to it, and its tail (e1) lies outside it.
    let f = synthetic(
        dir.path(),
        &[
            (e1_at - e0.len() as u64 - 8 * KIB, e0),
            (e1_at, e1),
            (e2_at, e2),
        ],
    );
    let o = replay(&f).unwrap().unwrap();
    assert_eq!((o.entries(), o.sequence_number()), (2, 6));
    assert_eq!(read(&o, &f, 2 * MIB, PAGE), page(0xA1));
    assert_eq!(read(&o, &f, 2 * MIB + 8192, PAGE), page(0xB2));
    assert!(read(&o, &f, 2 * MIB + 4096, PAGE).iter().all(|&b| b == 0));
    assert!(o.touches(2 * MIB + 4095, 2) && !o.touches(2 * MIB + 4096, 4096));

    // The highest sequence number wins; a gap ends a sequence.
    let a = entry(&spec(20, 0, &[data(2 * MIB, 0x20)]));
    let gap = entry(&spec(22, 0, &[data(2 * MIB, 0x22)]));
    let b = entry(&spec(9, (512 * KIB) as u32, &[data(2 * MIB, 0x09)]));
    let f = synthetic(
        dir.path(),
        &[(0, a.clone()), (8 * KIB, gap), (512 * KIB, b)],
    );
    let o = replay(&f).unwrap().unwrap();
    assert_eq!((o.entries(), o.sequence_number()), (1, 20));
    assert_eq!(read(&o, &f, 2 * MIB, PAGE), page(0x20));

    // Zero ranges of any size are ranges, not pages; the file grows to the furthest of
    // LastFileOffset and the targets.
    let big = 1u64 << 40;
    let z = entry(&EntrySpec {
        last: 5 * MIB,
        ..spec(
            1,
            0,
            &[
                data(2 * MIB, 0x55),
                Desc::Zero {
                    offset: 2 * MIB + 4096,
                    len: big,
                },
            ],
        )
    });
    let f = synthetic(dir.path(), &[(0, z)]);
    let started = Instant::now();
    let o = replay(&f).unwrap().unwrap();
    assert_eq!(o.len(), 2 * MIB + 4096 + big);
    assert_eq!(o.pages(), 1);
    assert!(
        read(&o, &f, 2 * MIB + 4096, 3 * PAGE)
            .iter()
            .all(|&b| b == 0)
    );
    assert!(read(&o, &f, big, PAGE).iter().all(|&b| b == 0));
    assert!(started.elapsed() < Duration::from_secs(2));
    // Reads stay inside the replayed file.
    let mut b = [0u8; 2];
    assert!(o.read(&f, o.len() - 1, &mut b).is_err());
    // A page written over part of a zero range splits it.
    let z = entry(&spec(
        1,
        0,
        &[
            Desc::Zero {
                offset: 2 * MIB,
                len: 64 * KIB,
            },
            data(2 * MIB + 16 * KIB, 0x66),
        ],
    ));
    let mut image = vec![0xCCu8; 3 * MIB as usize];
    place(&mut image, MIB, MIB, 0, &z);
    let p = dir.path().join("cc.bin");
    fs::write(&p, &image).unwrap();
    let f = InputFile::open(&p).unwrap();
    let o = replay(&f).unwrap().unwrap();
    let got = read(&o, &f, 2 * MIB - 4096, 80 * KIB as usize);
    assert!(got[..4096].iter().all(|&b| b == 0xCC));
    assert!(got[4096..20 * 1024].iter().all(|&b| b == 0));
    assert_eq!(&got[20 * 1024..24 * 1024], &page(0x66)[..]);
    assert!(got[24 * 1024..68 * 1024].iter().all(|&b| b == 0));
    assert!(got[68 * 1024..].iter().all(|&b| b == 0xCC));
}

/// Replay must fail as a corruption error naming this structure and offset, with
/// `needle` in its message, in well under two seconds.
fn refused(file: &InputFile, structure: &str, offset: u64, needle: &str) {
    let started = Instant::now();
    match replay(file) {
        Err(e) if e.kind() == vdconv::ErrorKind::Corrupt => {
            let detail = e.detail();
            assert_eq!(e.path(), Some(file.path()));
            assert_eq!(
                (e.structure(), e.offset()),
                (Some(structure), Some(offset)),
                "{detail}"
            );
            assert!(detail.contains(needle), "{detail:?} should say {needle:?}");
        }
        Err(other) => panic!("not a corruption error: {other}"),
        Ok(_) => panic!("accepted: should fail saying {needle:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn hostile_logs_are_refused_naming_the_entry() {
    let dir = tempdir();
    let d = dir.path();
    let good = || entry(&spec(3, 0, &[data(2 * MIB, 1)]));
    let one = |e: Vec<u8>| synthetic(d, &[(0, e)]);
    let le = "VHDX log entry";

    let mut bad_crc = good();
    bad_crc[5000] ^= 0x40;
    refused(&one(bad_crc), le, MIB, "CRC-32C");
    refused(
        &one(entry(&EntrySpec {
            guid: [9; 16],
            ..spec(3, 0, &[])
        })),
        le,
        MIB,
        "LogGuid",
    );
    // A torn write: the data sector still holds an older sequence number.
    let mut torn = good();
    torn[PAGE + 4092..PAGE + 4096].copy_from_slice(&2u32.to_le_bytes());
    refused(&one(torn), le, MIB, "torn");
    // Truncated: the entry claims a data sector that is not there.
    let mut short = good();
    short.truncate(PAGE);
    refused(&one(short), le, MIB, "data signature");
    refused(
        &one(entry(&spec(3, 0, &[data(64 * KIB, 1)]))),
        le,
        MIB,
        "below 196608",
    );
    refused(
        &one(entry(&spec(3, 0, &[data(MIB + 8 * KIB, 1)]))),
        le,
        MIB,
        "overlaps the log",
    );
    refused(
        &one(entry(&spec(
            3,
            0,
            &[Desc::Zero {
                offset: 2 * MIB + 512,
                len: 4096,
            }],
        ))),
        le,
        MIB,
        "aligned",
    );
    refused(
        &one(entry(&spec(
            3,
            0,
            &[Desc::Zero {
                offset: 2 * MIB,
                len: u64::MAX - 4095,
            }],
        ))),
        le,
        MIB,
        "reaches past",
    );
    refused(
        &one(entry(&spec(0, 0, &[]))),
        le,
        MIB,
        "sequence number is 0",
    );
    let mut huge_count = entry(&spec(3, 0, &[]));
    huge_count[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    refused(&one(huge_count), le, MIB, "do not fit");
    let mut huge_len = entry(&spec(3, 0, &[]));
    huge_len[8..12].copy_from_slice(&(MIB as u32).to_le_bytes());
    refused(&one(huge_len), le, MIB, "smaller than the log");
    let mut long = good();
    long[8..12].copy_from_slice(&(3 * PAGE as u32).to_le_bytes());
    refused(&one(long), le, MIB, "descriptors need");
    let mut bad_desc = good();
    bad_desc[64..68].copy_from_slice(b"dexc");
    refused(&one(bad_desc), le, MIB, "signature");
    let mut bad_desc_seq = good();
    bad_desc_seq[64 + 24] ^= 1;
    refused(&one(bad_desc_seq), le, MIB, "sequence number");
    // Truncated file: FlushedFileOffset beyond it.
    refused(
        &one(entry(&EntrySpec {
            flushed: 4 * MIB,
            ..spec(3, 0, &[])
        })),
        le,
        MIB,
        "truncated",
    );
    // A sequence whose newest entry's tail lies outside it.
    refused(
        &one(entry(&spec(3, (64 * KIB) as u32, &[]))),
        le,
        MIB,
        "outside its sequence",
    );
    // Sequence gap: the newest entry's tail names the entry before the gap.
    let a = entry(&spec(3, 0, &[]));
    let b = entry(&spec(5, 0, &[]));
    let f = synthetic(d, &[(0, a), (4 * KIB, b)]);
    assert_eq!(replay(&f).unwrap().unwrap().sequence_number(), 3);
    let b = entry(&spec(5, 0, &[]));
    refused(
        &synthetic(d, &[(4 * KIB, b)]),
        le,
        MIB + 4 * KIB,
        "outside its sequence",
    );
    // A tail inside an entry of the sequence.
    let a = entry(&spec(3, 0, &[data(2 * MIB, 1)]));
    let b = entry(&spec(4, 4096, &[]));
    refused(
        &synthetic(d, &[(0, a), (8 * KIB, b)]),
        le,
        MIB + 8 * KIB,
        "not the start",
    );

    // LogGuid set, nothing for it in the log.
    let f = synthetic(d, &[]);
    refused(&f, "VHDX log", MIB, "holds no entry");
    // Header fields that cannot describe a log.
    for (offset, len, needle) in [
        (MIB + 4096, MIB, "multiple of 1 MiB"),
        (0, MIB, "multiple of 1 MiB"),
        (MIB, 0, "log length 0"),
        (MIB, 2 << 30, "log length"),
        (2 * MIB, 2 * MIB, "past the end of the file"),
    ] {
        let started = Instant::now();
        match LogOverlay::replay(&f, offset, len, GUID) {
            Err(e) if e.kind() == vdconv::ErrorKind::Corrupt => {
                assert_eq!(
                    (e.structure(), e.offset()),
                    (Some("VHDX log"), Some(offset))
                );
                assert!(e.detail().contains(needle), "{}", e.detail());
            }
            other => panic!("{offset} {len}: {:?}", other.map(|o| o.map(|o| o.len()))),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn a_log_full_of_entries_is_searched_in_linear_time() {
    let dir = tempdir();
    // 256 one-sector entries in sequence whose newest names a tail outside: every start
    // inside would fail the same way, and is not searched again.
    let mut entries = Vec::new();
    for i in 0..255u64 {
        entries.push((i * 4 * KIB, entry(&spec(100 + i, (1020 * KIB) as u32, &[]))));
    }
    let f = synthetic(dir.path(), &entries);
    let started = Instant::now();
    assert!(replay(&f).is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    // Every sector an entry header claiming nearly the whole log.
    let mut image = vec![0u8; 3 * MIB as usize];
    for i in 0..256usize {
        let mut e = entry(&spec(1 + i as u64, 0, &[]));
        e[8..12].copy_from_slice(&((MIB - 4 * KIB) as u32).to_le_bytes());
        let at = MIB as usize + i * PAGE;
        image[at..at + PAGE].copy_from_slice(&e);
    }
    let p = dir.path().join("claims.bin");
    fs::write(&p, &image).unwrap();
    let f = InputFile::open(&p).unwrap();
    let started = Instant::now();
    assert!(replay(&f).is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn the_log_fuzz_entry_point_survives_damage() {
    let mut log = GUID.to_vec();
    let mut region = vec![0u8; 64 * KIB as usize];
    let e0 = entry(&spec(
        1,
        0,
        &[
            data(2 * MIB, 1),
            Desc::Zero {
                offset: 3 * MIB,
                len: 8192,
            },
        ],
    ));
    let e1 = entry(&spec(2, 0, &[data(2 * MIB + 4096, 2)]));
    region[..e0.len()].copy_from_slice(&e0);
    region[e0.len()..e0.len() + e1.len()].copy_from_slice(&e1);
    log.extend_from_slice(&region);
    fuzz_vhdx_log(&log);
    fuzz_vhdx_log(&[]);
    fuzz_vhdx_log(b"vhdxfile");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let mut b = log.clone();
        for _ in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = (rng % (16 + 5 * PAGE as u64)) as usize;
            b[at] = (rng >> 40) as u8;
        }
        fuzz_vhdx_log(&b);
    }
}
