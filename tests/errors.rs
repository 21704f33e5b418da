//! Error paths: each exits with its documented code, prints one line naming the file (and
//! the offset where there is one), and leaves no destination or temporary file behind.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;

fn patterned_vmdk(dir: &Path, name: &str, subformat: &str, size: u64) -> std::path::PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    patterned_raw(&raw, size, 3);
    let vmdk = dir.join(format!("{name}.vmdk"));
    qemu_vmdk(&raw, &vmdk, &format!("subformat={subformat}"));
    fs::remove_file(raw).unwrap();
    vmdk
}

#[test]
fn missing_extent_file() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let vmdk = patterned_vmdk(dir.path(), "flat", "monolithicFlat", MIB);
    fs::remove_file(dir.path().join("flat-flat.vmdk")).unwrap();
    expect_failure(&vmdk, dir.path(), 3, &["flat-flat.vmdk", "line"]);
}

#[test]
fn truncated_sparse_file() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let vmdk = patterned_vmdk(dir.path(), "sparse", "monolithicSparse", 2 * MIB);
    let f = fs::OpenOptions::new().write(true).open(&vmdk).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    expect_failure(
        &vmdk,
        dir.path(),
        3,
        &["sparse.vmdk", "at offset", "past the end of the file"],
    );
}

#[test]
fn truncated_stream_optimized_file() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let vmdk = patterned_vmdk(dir.path(), "stream", "streamOptimized", 2 * MIB);
    let f = fs::OpenOptions::new().write(true).open(&vmdk).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    expect_failure(&vmdk, dir.path(), 3, &["stream.vmdk", "at offset"]);
}

#[test]
fn bad_magic() {
    let dir = tempdir();
    let bad = dir.path().join("bad.vmdk");
    fs::write(&bad, [b"KDMX".as_slice(), &[0u8; 1020]].concat()).unwrap();
    expect_failure(
        &bad,
        dir.path(),
        3,
        &["bad.vmdk", "offset 0", "not recognised"],
    );
}

#[test]
fn bad_magic_in_a_split_extent() {
    let dir = tempdir();
    fs::write(
        dir.path().join("d-s001.vmdk"),
        [b"KDMX".as_slice(), &[0u8; 1020]].concat(),
    )
    .unwrap();
    let desc = dir.path().join("d.vmdk");
    fs::write(
        &desc,
        "createType=\"twoGbMaxExtentSparse\"\nRW 2 SPARSE \"d-s001.vmdk\"\n",
    )
    .unwrap();
    expect_failure(
        &desc,
        dir.path(),
        3,
        &["d-s001.vmdk", "sparse header at offset 0", "magic"],
    );
}

#[test]
fn grain_table_entry_past_end_of_file() {
    let dir = tempdir();
    expect_failure(
        &fixture("handmade/corrupt/gte-past-eof.vmdk"),
        dir.path(),
        3,
        &[
            "gte-past-eof.vmdk",
            "grain table entry at offset 13836",
            "past the end",
        ],
    );
    expect_failure(
        &fixture("handmade/corrupt/gte-in-metadata.vmdk"),
        dir.path(),
        3,
        &[
            "gte-in-metadata.vmdk",
            "grain table entry at offset",
            "inside the metadata",
        ],
    );
}

fn descriptor(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(
        &p,
        format!("# Disk DescriptorFile\nversion=1\nCID=1\n{body}\n"),
    )
    .unwrap();
    p
}

#[test]
fn unsupported_layouts_are_named() {
    let dir = tempdir();
    fs::write(dir.path().join("base.vmdk"), [0u8; 512]).unwrap();
    // Snapshot deltas (hosted, vmfsSparse, seSparse) are read now: tests/chains.rs.
    let cases = [
        (
            "rdm.vmdk",
            "parentCID=ffffffff\ncreateType=\"vmfsRawDeviceMap\"\nRW 8 VMFSRDM \"base.vmdk\"",
            "raw device",
        ),
        (
            "raw.vmdk",
            "parentCID=ffffffff\ncreateType=\"custom\"\nRW 8 VMFSRAW \"base.vmdk\"",
            "raw device",
        ),
        (
            "device.vmdk",
            "parentCID=ffffffff\ncreateType=\"fullDevice\"\nRW 8 FLAT \"/dev/sda\" 0",
            "raw device",
        ),
    ];
    let out = tempdir();
    for (name, body, needle) in cases {
        let p = descriptor(dir.path(), name, body);
        expect_failure(&p, out.path(), 3, &[name, needle]);
    }
    let cowd = dir.path().join("cowd.vmdk");
    fs::write(&cowd, [b"COWD".as_slice(), &[0u8; 2044]].concat()).unwrap();
    // A redo log extent alone: its descriptor (which names the parent) is what to open.
    expect_failure(
        &cowd,
        out.path(),
        3,
        &["cowd.vmdk", "vmfsSparse", "descriptor"],
    );
}

#[test]
fn extent_paths_outside_the_folder_are_refused() {
    let outside = tempdir();
    let secret = outside.path().join("secret.raw");
    fs::write(&secret, vec![7u8; 4096]).unwrap();
    let dir = tempdir();
    let inner = dir.path().join("vm");
    fs::create_dir(&inner).unwrap();
    fs::write(dir.path().join("sibling.raw"), vec![7u8; 4096]).unwrap();
    symlink(&secret, inner.join("link.raw")).unwrap();
    let abs = descriptor(
        &inner,
        "abs.vmdk",
        &format!(
            "createType=\"monolithicFlat\"\nRW 8 FLAT \"{}\" 0",
            secret.display()
        ),
    );
    let dotdot = descriptor(
        &inner,
        "dotdot.vmdk",
        "createType=\"monolithicFlat\"\nRW 8 FLAT \"../sibling.raw\" 0",
    );
    let link = descriptor(
        &inner,
        "link.vmdk",
        "createType=\"monolithicFlat\"\nRW 8 FLAT \"link.raw\" 0",
    );
    let out = tempdir();
    expect_failure(
        &abs,
        out.path(),
        3,
        &["abs.vmdk", "line 5", "absolute", "--allow-outside-paths"],
    );
    expect_failure(&dotdot, out.path(), 3, &["dotdot.vmdk", "line 5", "'..'"]);
    expect_failure(&link, out.path(), 3, &["link.vmdk", "line 5", "outside"]);
    // The user can vouch for the descriptor.
    for d in [&abs, &dotdot, &link] {
        let dst = out.path().join("ok.vhd");
        assert_ok(&vdconv(&[
            &"convert",
            d,
            &dst,
            &"--allow-outside-paths",
            &"--force",
            &"-q",
        ]));
    }
}

#[test]
fn existing_destination_needs_force() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let vmdk = patterned_vmdk(dir.path(), "s", "monolithicSparse", MIB);
    let dst = dir.path().join("exists.vhd");
    fs::write(&dst, b"keep me").unwrap();
    let o = vdconv(&[&"convert", &vmdk, &dst]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"));
    assert_eq!(fs::read(&dst).unwrap(), b"keep me");
    assert_ok(&vdconv(&[
        &"convert", &vmdk, &dst, &"--force", &"--type", &"fixed", &"-q",
    ]));
    assert_eq!(fs::metadata(&dst).unwrap().len(), MIB + 512);
}

#[test]
fn destination_that_is_an_input_is_refused() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let vmdk = patterned_vmdk(dir.path(), "f", "monolithicFlat", MIB);
    let flat = dir.path().join("f-flat.vmdk");
    let before = file_sha256(&flat);
    let o = vdconv(&[&"convert", &vmdk, &flat, &"-O", &"vhd", &"--force"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("one of the input files"));
    assert_eq!(file_sha256(&flat), before);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempdir();
    let src = fixture("handmade/split-flat/disk.vmdk");
    let o = vdconv(&[&"convert", &src, &dir.path().join("out.img")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("-O vhd"));
    let o = vdconv(&[
        &"convert",
        &src,
        &dir.path().join("o.vhd"),
        &"--block-size",
        &"3Q",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = vdconv(&[
        &"convert",
        &src,
        &dir.path().join("o.vhd"),
        &"--block-size",
        &"3M",
    ]);
    assert_eq!(o.status.code(), Some(2), "3 MiB is not a power of two");
    let o = vdconv(&[&"frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn disk_too_large_for_vhd() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let vmdk = dir.path().join("big.vmdk");
    run_ok("qemu-img", &[&"create", &"-f", &"vmdk", &vmdk, &"2041G"]);
    expect_failure(&vmdk, dir.path(), 4, &["2040 GiB", "VHDX"]);
}

#[test]
fn missing_source() {
    let dir = tempdir();
    expect_failure(
        &dir.path().join("nope.vmdk"),
        dir.path(),
        3,
        &["nope.vmdk", "No such file"],
    );
}
