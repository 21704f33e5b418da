//! The registry hive reader against hivex: hives built with hivexsh (plus hand-made cells
//! for what hivex never writes), every value compared with hivexget's output, and hostile
//! hives (cycles, bad offsets, mutations) read in bounded time without a panic.

#[path = "common/guest_hive.rs"]
mod guest_hive;
#[path = "common/guest_tools.rs"]
mod guest_tools;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use guest_hive::*;
use vdconv::guest::GuestError;
use vdconv::guest::registry::{Hive, ValueData, fuzz_hive};

fn open(path: &Path) -> Hive {
    Hive::from_bytes(std::fs::read(path).unwrap()).unwrap()
}

/// Our value rendered the way hivexget prints it.
fn as_hivexget(data: &ValueData) -> Vec<u8> {
    match data {
        ValueData::String(s) | ValueData::ExpandString(s) => format!("{s}\n").into_bytes(),
        ValueData::MultiString(list) => list
            .iter()
            .map(|s| format!("{s}\n"))
            .collect::<String>()
            .into_bytes(),
        // hivexget prints numbers as signed.
        ValueData::Dword(v) => format!("{}\n", *v as i32).into_bytes(),
        ValueData::Qword(v) => format!("{}\n", *v as i64).into_bytes(),
        ValueData::Binary(b) => b.clone(),
    }
}

fn assert_same_as_hivexget(path: &Path, hive: &Hive, key: &str, value: &str) {
    let ours = hive
        .value(key, value)
        .unwrap()
        .unwrap_or_else(|| panic!("{key} {value} missing"));
    let mut theirs = hivexget(path, key, value);
    let mut mine = as_hivexget(&ours.data());
    // hivexget prints the empty string that ends a REG_MULTI_SZ as one more line.
    if matches!(ours.data(), ValueData::MultiString(_)) {
        while theirs.ends_with(b"\n\n") {
            theirs.pop();
        }
        while mine.ends_with(b"\n\n") {
            mine.pop();
        }
    }
    assert_eq!(mine, theirs, "{key} {value}");
}

fn sample_keys() -> Vec<(&'static str, Vec<(&'static str, HVal)>)> {
    let blob: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    vec![
        (
            "Select",
            vec![
                ("Current", HVal::Dword(1)),
                ("Default", HVal::Dword(1)),
                ("LastKnownGood", HVal::Dword(2)),
            ],
        ),
        (
            "ControlSet001\\Services\\storvsc",
            vec![
                ("Start", HVal::Dword(0)),
                ("Type", HVal::Dword(1)),
                (
                    "ImagePath",
                    HVal::ExpandSz("System32\\drivers\\storvsc.sys".into()),
                ),
                ("Group", HVal::Sz("SCSI miniport".into())),
            ],
        ),
        (
            "Types",
            vec![
                ("@", HVal::Sz("the default value".into())),
                (
                    "Multi",
                    HVal::Multi(vec!["one".into(), "two".into(), "three".into()]),
                ),
                ("Qword", HVal::Qword(0x1122_3344_5566_7788)),
                ("Blob", HVal::Binary(blob)),
                ("Tiny", HVal::Binary(vec![1, 2, 3])),
                ("Empty", HVal::Sz(String::new())),
                ("Max", HVal::Dword(u32::MAX)),
            ],
        ),
        (
            "Deep\\L01\\L02\\L03\\L04\\L05\\L06\\L07\\L08\\L09\\L10\\L11\\L12\\L13\\L14\\L15\\L16\\L17\\L18\\L19\\L20\\L21\\L22\\L23\\L24\\L25\\L26\\L27\\L28\\L29\\L30",
            vec![("Leaf", HVal::Sz("bottom".into()))],
        ),
    ]
}

#[test]
fn values_read_as_hivexget_reads_them() {
    if !guest_tools::have_hivex() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("SYSTEM");
    let keys = sample_keys();
    build_hive(&path, &keys);
    let hive = open(&path);
    assert!(!hive.dirty());
    assert!(hive.base_block().checksum_ok);
    for (key, values) in &keys {
        for (name, _) in values {
            assert_same_as_hivexget(&path, &hive, key, name);
        }
    }
    // Case-insensitive paths and names, leading separator, default value by "" and "@".
    let storvsc = hive
        .key("\\controlset001\\SERVICES\\StorVsc")
        .unwrap()
        .unwrap();
    assert_eq!(storvsc.dword("START").unwrap(), Some(0));
    assert_eq!(
        hive.value("Types", "")
            .unwrap()
            .unwrap()
            .as_string()
            .unwrap(),
        "the default value"
    );
    assert_eq!(
        hive.value("Types", "Qword").unwrap().unwrap().as_qword(),
        Some(0x1122_3344_5566_7788)
    );
    assert!(
        hive.key("ControlSet001\\Services\\nothere")
            .unwrap()
            .is_none()
    );
    assert!(hive.value("Select", "nothere").unwrap().is_none());
    let names: Vec<String> = hive
        .key("ControlSet001\\Services")
        .unwrap()
        .unwrap()
        .subkeys()
        .unwrap()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(names, ["storvsc"]);
}

/// Names hivexsh lists under `key`.
fn hivexsh_ls(path: &Path, key: &str) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'cd {key}\\nls\\n' | hivexsh '{}'",
            path.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn thousands_of_subkeys_through_lh_and_ri_lists() {
    if !guest_tools::have_hivex() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many");
    let names: Vec<String> = (0..1500).map(|i| format!("K{i:04}")).collect();
    let mut keys: Vec<(&str, Vec<(&str, HVal)>)> = names
        .iter()
        .map(|n| Box::leak(format!("Many\\{n}").into_boxed_str()) as &str)
        .map(|p| (p, Vec::new()))
        .collect();
    keys.push(("Many\\K0777", vec![("Mark", HVal::Dword(777))]));
    build_hive(&path, &keys);
    let hive = open(&path);
    let listed: Vec<String> = hive
        .key("many")
        .unwrap()
        .unwrap()
        .subkeys()
        .unwrap()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(listed, names);
    assert_eq!(listed, hivexsh_ls(&path, "Many"));
    assert_eq!(
        hive.value("Many\\k0777", "mark")
            .unwrap()
            .unwrap()
            .as_dword(),
        Some(777)
    );

    // Re-index the same keys through an ri list over two li lists, as Windows does for
    // large keys, and check that hivex and we still agree.
    let many = hive.key("Many").unwrap().unwrap();
    let many_offset = many.offset();
    let offsets: Vec<u32> = many.subkeys().unwrap().iter().map(|k| k.offset()).collect();
    let mut bytes = std::fs::read(&path).unwrap();
    let lists = append_cells(
        &mut bytes,
        &[
            list_cell(b"li", &offsets[..700]),
            list_cell(b"lh", &offsets[700..]),
        ],
    );
    let ri = append_cells(&mut bytes, &[list_cell(b"ri", &lists)]);
    patch_u32(&mut bytes, many_offset, 28, ri[0]);
    let ri_path = dir.path().join("many-ri");
    std::fs::write(&ri_path, &bytes).unwrap();
    let hive = open(&ri_path);
    let listed: Vec<String> = hive
        .key("Many")
        .unwrap()
        .unwrap()
        .subkeys()
        .unwrap()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(listed, names);
    assert_eq!(listed, hivexsh_ls(&ri_path, "Many"));
    assert_same_as_hivexget(&ri_path, &hive, "Many\\K0777", "Mark");
}

#[test]
fn big_values_are_read_from_db_records() {
    if !guest_tools::have_hivex() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    build_hive(&path, &[("Big", vec![("Small", HVal::Dword(5))])]);
    let hive = open(&path);
    let big = hive.key("Big").unwrap().unwrap();
    let big_offset = big.offset();
    let small = hive.key("Big").unwrap().unwrap();
    drop(small);
    let mut bytes = std::fs::read(&path).unwrap();
    // The value list of Big: one vk so far; find it through the nk's value-list field.
    let vl_field = 4096 + big_offset as usize + 4 + 40;
    let old_list = u32::from_le_bytes(bytes[vl_field..vl_field + 4].try_into().unwrap());
    let old_vk = u32::from_le_bytes(
        bytes[4096 + old_list as usize + 4..4096 + old_list as usize + 8]
            .try_into()
            .unwrap(),
    );

    let blob: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let segments: Vec<Vec<u8>> = blob.chunks(16344).map(<[u8]>::to_vec).collect();
    let seg_offsets = append_cells(&mut bytes, &segments);
    let seg_list = append_cells(
        &mut bytes,
        &[seg_offsets.iter().flat_map(|o| o.to_le_bytes()).collect()],
    );
    let mut db = b"db".to_vec();
    db.extend_from_slice(&(seg_offsets.len() as u16).to_le_bytes());
    db.extend_from_slice(&seg_list[0].to_le_bytes());
    let db_off = append_cells(&mut bytes, &[db]);
    // A long REG_SZ too, also split over segments: 9000 UTF-16 units.
    let text: String = (0..9000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut text_bytes: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    text_bytes.extend_from_slice(&[0, 0]);
    let tsegs: Vec<Vec<u8>> = text_bytes.chunks(16344).map(<[u8]>::to_vec).collect();
    let tseg_offsets = append_cells(&mut bytes, &tsegs);
    let tseg_list = append_cells(
        &mut bytes,
        &[tseg_offsets.iter().flat_map(|o| o.to_le_bytes()).collect()],
    );
    let mut tdb = b"db".to_vec();
    tdb.extend_from_slice(&(tseg_offsets.len() as u16).to_le_bytes());
    tdb.extend_from_slice(&tseg_list[0].to_le_bytes());
    let tdb_off = append_cells(&mut bytes, &[tdb]);
    let vks = append_cells(
        &mut bytes,
        &[
            vk_cell("Blob", 3, blob.len() as u32, db_off[0]),
            vk_cell("LongText", 1, text_bytes.len() as u32, tdb_off[0]),
        ],
    );
    let list: Vec<u8> = [old_vk, vks[0], vks[1]]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect();
    let new_list = append_cells(&mut bytes, &[list]);
    patch_u32(&mut bytes, big_offset, 36, 3);
    patch_u32(&mut bytes, big_offset, 40, new_list[0]);
    let big_path = dir.path().join("big-db");
    std::fs::write(&big_path, &bytes).unwrap();

    let hive = open(&big_path);
    let value = hive.value("Big", "Blob").unwrap().unwrap();
    assert_eq!(value.raw(), blob.as_slice());
    assert_same_as_hivexget(&big_path, &hive, "Big", "Blob");
    assert_eq!(
        hive.value("Big", "LongText")
            .unwrap()
            .unwrap()
            .as_string()
            .unwrap(),
        text
    );
    assert_same_as_hivexget(&big_path, &hive, "Big", "LongText");
    assert_same_as_hivexget(&big_path, &hive, "Big", "Small");
}

#[test]
fn dirty_hive_is_reported() {
    let mut bytes = empty_hive();
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    fix_checksum(&mut bytes);
    let hive = Hive::from_bytes(bytes).unwrap();
    assert!(hive.dirty());
    assert!(!Hive::from_bytes(empty_hive()).unwrap().dirty());
}

/// A hive whose key A lists, through a hand-made li list, the root as its subkey, and whose
/// key B's subkey list is an ri index that contains itself.
fn cyclic_hive(dir: &Path) -> Vec<u8> {
    let path = dir.join("cycle");
    std::fs::write(&path, empty_hive()).unwrap();
    build_hive(&path, &[("A", vec![]), ("B\\C", vec![])]);
    let hive = open(&path);
    let root = hive.root().unwrap().offset();
    let a = hive.key("A").unwrap().unwrap().offset();
    let b = hive.key("B").unwrap().unwrap().offset();
    let mut bytes = std::fs::read(&path).unwrap();
    let li = append_cells(&mut bytes, &[list_cell(b"li", &[root])]);
    patch_u32(&mut bytes, a, 20, 1);
    patch_u32(&mut bytes, a, 28, li[0]);
    // An ri whose only entry is its own offset: the next cell appended lands at a known
    // place, the start of a new hbin plus its 32-byte header.
    let next = (bytes.len() - 4096 + 32) as u32;
    let ri = append_cells(&mut bytes, &[list_cell(b"ri", &[next])]);
    assert_eq!(ri[0], next);
    patch_u32(&mut bytes, b, 28, ri[0]);
    bytes
}

#[test]
fn cycles_are_errors_in_bounded_time() {
    if !guest_tools::have_hivex() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bytes = cyclic_hive(dir.path());
    let started = Instant::now();
    let hive = Hive::from_bytes(bytes.clone()).unwrap();
    // A key that is its own ancestor.
    assert!(
        matches!(hive.key("A\\ROOT\\A"), Err(GuestError::Corrupt { .. })),
        "{:?}",
        hive.key("A\\ROOT\\A").err()
    );
    let walked = hive.walk(&|| false, &mut |_, _| {});
    assert!(
        matches!(walked, Err(GuestError::Corrupt { .. })),
        "{walked:?}"
    );
    // A list that contains itself.
    let err = hive.key("B\\C").err().expect("cycle");
    assert!(err.to_string().contains("cycle"), "{err}");
    fuzz_hive(&bytes);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn damaged_hives_are_errors_not_panics() {
    assert!(Hive::from_bytes(Vec::new()).is_err());
    assert!(Hive::from_bytes(b"regf".to_vec()).is_err());
    let mut bytes = empty_hive();
    bytes[36..40].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    assert!(Hive::from_bytes(bytes).is_err());
    let mut bytes = empty_hive();
    bytes.truncate(4096 + 40);
    assert!(Hive::from_bytes(bytes).is_err());

    // Deterministic mutations of a real hive: bytes flipped across the cells.
    let dir = tempfile::tempdir().unwrap();
    let base = if guest_tools::have_hivex() {
        let path = dir.path().join("m");
        build_hive(&path, &sample_keys());
        std::fs::read(&path).unwrap()
    } else {
        empty_hive()
    };
    let started = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut m = base.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = 4096 + (seed as usize % (m.len() - 4096));
            m[at] = (seed >> 32) as u8;
        }
        fuzz_hive(&m);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
