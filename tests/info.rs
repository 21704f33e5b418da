//! `vdconv info`: what it reports, in text and JSON.

mod common;

use common::*;
use serde_json::Value;

fn info_json(path: &std::path::Path) -> Value {
    let o = vdconv(&[&"info", &"--json", &path]);
    assert_ok(&o);
    serde_json::from_slice(&o.stdout).expect("stdout is one JSON document")
}

#[test]
fn split_sparse_disk_from_qemu() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 3 * MIB + 512, 1);
    let vmdk = dir.path().join("split.vmdk");
    qemu_vmdk(
        &raw,
        &vmdk,
        "subformat=twoGbMaxExtentSparse,adapter_type=lsilogic,hwversion=19",
    );
    let v = info_json(&vmdk);
    assert_eq!(v["format"], "vmdk");
    assert_eq!(v["layout"], "twoGbMaxExtentSparse");
    assert_eq!(v["virtual_size"], 3 * MIB + 512);
    assert_eq!(v["vmdk"]["adapter_type"], "lsilogic");
    assert_eq!(v["vmdk"]["hardware_version"], "19");
    assert_eq!(v["vmdk"]["grain_size"], 65536);
    assert_eq!(v["vmdk"]["embedded_descriptor"], false);
    let extents = v["extents"].as_array().unwrap();
    assert_eq!(extents.len(), 1);
    assert_eq!(extents[0]["type"], "SPARSE");
    assert!(
        extents[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("split-s001.vmdk")
    );
    // Allocated, exactly: the pattern's 64 KiB pieces cycle through data, text, written
    // zeros (which qemu-img does not allocate), a lone sector and a hole; of the 48 whole
    // pieces 29 hold data, and the last 512 bytes (a partial grain) hold data too.
    assert_eq!(v["allocated_bytes"], 29 * 65536 + 512);
}

#[test]
fn extents_and_ddb_of_a_hand_made_descriptor() {
    let v = info_json(&fixture("handmade/crlf spaces/My Disk.vmdk"));
    assert_eq!(v["layout"], "monolithicFlat");
    assert_eq!(v["virtual_size"], (512 + 640 + 512) * 512);
    // The ZERO extent is never allocated; the flat extents count what the file system
    // stores (a git checkout leaves zero runs of the fixture as holes).
    let allocated = v["allocated_bytes"].as_u64().unwrap();
    assert!(allocated > 0 && allocated <= 1024 * 512, "{allocated}");
    let extents = v["extents"].as_array().unwrap();
    let kinds: Vec<_> = extents
        .iter()
        .map(|e| (e["access"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("RW", "FLAT"), ("RDONLY", "ZERO"), ("RDONLY", "FLAT")]
    );
    assert_eq!(extents[2]["file_offset"], 512 * 512);
    assert_eq!(extents[2]["start"], (512 + 640) * 512);
    assert_eq!(v["vmdk"]["geometry"]["cylinders"], 6);
    assert_eq!(v["vmdk"]["geometry"]["heads"], 16);
    assert_eq!(v["vmdk"]["geometry"]["sectors"], 63);
}

#[test]
fn text_output_names_format_and_size() {
    let o = vdconv(&[&"info", &fixture("handmade/stream-footer-padded.vmdk")]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("format: vmdk (streamOptimized)"), "{text}");
    assert!(
        text.contains(&format!("virtual size: {} bytes", 40 * MIB + 7 * 512)),
        "{text}"
    );
    assert!(text.contains("compressed"), "{text}");
}
