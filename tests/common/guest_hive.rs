//! Registry hives for tests: an empty hive written here (hivexsh cannot create one), keys
//! and values added with `hivexsh -w`, hand-made cells appended for what hivex never
//! writes (ri index lists, big-data records, cycles), and `hivexget` as the oracle.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::Command;

/// A value as hivexsh's `setval` takes it.
#[derive(Debug, Clone)]
pub enum HVal {
    Sz(String),
    ExpandSz(String),
    Multi(Vec<String>),
    Dword(u32),
    Qword(u64),
    Binary(Vec<u8>),
}

impl HVal {
    fn setval_line(&self) -> String {
        match self {
            HVal::Sz(s) => format!("string:{s}"),
            HVal::ExpandSz(s) => format!("expandstring:{s}"),
            HVal::Dword(v) => format!("dword:0x{v:08x}"),
            // hivexsh's qword: parser loses the high bytes; the generic form is exact.
            HVal::Qword(v) => format!("hex:11:{}", hex(&v.to_le_bytes())),
            HVal::Binary(b) => format!("hex:3:{}", hex(b)),
            HVal::Multi(list) => {
                let mut text = String::new();
                for s in list {
                    text.push_str(s);
                    text.push('\0');
                }
                text.push('\0');
                let bytes: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
                format!("hex:7:{}", hex(&bytes))
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cell(data: &[u8]) -> Vec<u8> {
    let size = (4 + data.len()).div_ceil(8) * 8;
    let mut c = (-(size as i32)).to_le_bytes().to_vec();
    c.extend_from_slice(data);
    c.resize(size, 0);
    c
}

/// A valid hive (version 1.5) holding only a root key named ROOT and its security cell.
pub fn empty_hive() -> Vec<u8> {
    let root_off: u32 = 0x20;
    let name = b"ROOT";
    let nk_size = (4 + 76 + name.len()).div_ceil(8) * 8;
    let sk_off = root_off + nk_size as u32;
    let mut nk = Vec::new();
    nk.extend_from_slice(b"nk");
    nk.extend_from_slice(&0x2cu16.to_le_bytes()); // root, compressed name, no delete
    nk.extend_from_slice(&[0; 8]); // last written
    for v in [
        0u32,
        0xffff_ffff,
        0,
        0,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
        sk_off,
        0xffff_ffff,
        0,
        0,
        0,
        0,
        0,
    ] {
        nk.extend_from_slice(&v.to_le_bytes());
    }
    nk.extend_from_slice(&(name.len() as u16).to_le_bytes());
    nk.extend_from_slice(&0u16.to_le_bytes());
    nk.extend_from_slice(name);
    assert_eq!(nk.len(), 76 + name.len());
    // A self-relative security descriptor with no owner, group or ACLs.
    let sd = [
        1u8, 0, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut sk = b"sk\0\0".to_vec();
    for v in [sk_off, sk_off, 1, sd.len() as u32] {
        sk.extend_from_slice(&v.to_le_bytes());
    }
    sk.extend_from_slice(&sd);
    let mut body = cell(&nk);
    body.extend(cell(&sk));
    let free = 4096 - 32 - body.len();
    body.extend_from_slice(&(free as i32).to_le_bytes());
    body.resize(4096 - 32, 0);
    let mut hive = vec![0u8; 4096];
    let header: [u32; 11] = [0, 1, 1, 0, 0, 1, 5, 0, 1, root_off, 4096];
    hive[..4].copy_from_slice(b"regf");
    for (i, v) in header.iter().enumerate().skip(1) {
        hive[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    // Clustering factor.
    hive[44..48].copy_from_slice(&1u32.to_le_bytes());
    hive.extend_from_slice(b"hbin");
    hive.extend_from_slice(&0u32.to_le_bytes());
    hive.extend_from_slice(&4096u32.to_le_bytes());
    hive.extend_from_slice(&[0; 20]);
    hive.extend(body);
    fix_checksum(&mut hive);
    hive
}

/// Recomputes the base block's XOR checksum.
pub fn fix_checksum(hive: &mut [u8]) {
    let mut x = 0u32;
    for i in 0..127 {
        x ^= u32::from_le_bytes(hive[i * 4..i * 4 + 4].try_into().unwrap());
    }
    let x = match x {
        0xffff_ffff => 0xffff_fffe,
        0 => 1,
        x => x,
    };
    hive[508..512].copy_from_slice(&x.to_le_bytes());
}

/// Keys (a `\`-separated path) with the values to set on them, written to `path` through
/// hivexsh from an empty hive. Keys are created along the way.
pub fn build_hive(path: &Path, keys: &[(&str, Vec<(&str, HVal)>)]) {
    fs::write(path, empty_hive()).unwrap();
    let mut script = format!("load {}\n", path.display());
    let mut made: Vec<String> = Vec::new();
    for (key, values) in keys {
        script.push_str("cd \\\n");
        let mut so_far = String::new();
        for comp in key.split('\\').filter(|c| !c.is_empty()) {
            so_far = format!("{so_far}\\{comp}");
            if !made.iter().any(|m| m.eq_ignore_ascii_case(&so_far)) {
                script.push_str(&format!("add {comp}\n"));
                made.push(so_far.clone());
            }
            script.push_str(&format!("cd {comp}\n"));
        }
        if !values.is_empty() {
            script.push_str(&format!("setval {}\n", values.len()));
            for (name, v) in values {
                script.push_str(&format!("{name}\n{}\n", v.setval_line()));
            }
        }
    }
    script.push_str("commit\n");
    let script_path = path.with_extension("hivexsh");
    fs::write(&script_path, script).unwrap();
    let out = Command::new("hivexsh")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .output()
        .expect("run hivexsh");
    assert!(
        out.status.success(),
        "hivexsh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// hivexget's raw output for one value.
pub fn hivexget(path: &Path, key: &str, value: &str) -> Vec<u8> {
    let out = Command::new("hivexget")
        .arg(path)
        .arg(key)
        .arg(value)
        .output()
        .expect("run hivexget");
    assert!(
        out.status.success(),
        "hivexget {key} {value} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Appends an hbin holding `cells` (each the data after the size field) and returns their
/// offsets (relative to the first hbin, as the hive addresses cells).
pub fn append_cells(hive: &mut Vec<u8>, cells: &[Vec<u8>]) -> Vec<u32> {
    let start = hive.len() - 4096;
    let mut body = Vec::new();
    let mut offsets = Vec::new();
    for c in cells {
        offsets.push((start + 32 + body.len()) as u32);
        body.extend(cell(c));
    }
    let size = (32 + body.len()).div_ceil(4096) * 4096;
    let free = size - 32 - body.len();
    if free > 0 {
        body.extend_from_slice(&(free as i32).to_le_bytes());
        body.resize(size - 32, 0);
    }
    hive.extend_from_slice(b"hbin");
    hive.extend_from_slice(&(start as u32).to_le_bytes());
    hive.extend_from_slice(&(size as u32).to_le_bytes());
    hive.extend_from_slice(&[0; 20]);
    hive.extend(body);
    let bins = (hive.len() - 4096) as u32;
    hive[40..44].copy_from_slice(&bins.to_le_bytes());
    fix_checksum(hive);
    offsets
}

/// Overwrites a u32 field `at` bytes into the data of the cell at `cell_offset`.
pub fn patch_u32(hive: &mut [u8], cell_offset: u32, at: usize, value: u32) {
    let p = 4096 + cell_offset as usize + 4 + at;
    hive[p..p + 4].copy_from_slice(&value.to_le_bytes());
}

/// A subkey list cell: `kind` is b"li" or b"ri" (offsets only) or b"lh"/b"lf" (offset +
/// a zero hash, which readers must not rely on).
pub fn list_cell(kind: &[u8; 2], entries: &[u32]) -> Vec<u8> {
    let mut c = kind.to_vec();
    c.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for e in entries {
        c.extend_from_slice(&e.to_le_bytes());
        if kind == b"lh" || kind == b"lf" {
            c.extend_from_slice(&[0; 4]);
        }
    }
    c
}

/// A value key cell with the name in Latin-1.
pub fn vk_cell(name: &str, kind: u32, size: u32, data_offset: u32) -> Vec<u8> {
    let mut c = b"vk".to_vec();
    c.extend_from_slice(&(name.len() as u16).to_le_bytes());
    c.extend_from_slice(&size.to_le_bytes());
    c.extend_from_slice(&data_offset.to_le_bytes());
    c.extend_from_slice(&kind.to_le_bytes());
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(name.as_bytes());
    c
}

// ------------------------------------------------------- a Windows guest ready for Hyper-V

/// The network adapter class key under which a NIC's TCP/IP interface settings sit.
pub const IFACE: &str = "{4d36e972-e325-11ce-bfc1-08002be10318}";

/// Keys of the SYSTEM hive, each with its values, before hivexsh writes them.
pub type HiveKeys = Vec<(String, Vec<(&'static str, HVal)>)>;

/// A SYSTEM hive as a Windows Server prepared for Hyper-V has it: the storage drivers
/// boot-start, DHCP automatic, SAN policy OnlineAll, RDP on, Fast Startup off.
pub fn system_hive(path: &Path, edit: &dyn Fn(&mut HiveKeys)) {
    let cs = "ControlSet001";
    let mut keys: HiveKeys = vec![
        (
            "Select".into(),
            vec![
                ("Current", HVal::Dword(1)),
                ("Default", HVal::Dword(1)),
                ("LastKnownGood", HVal::Dword(1)),
            ],
        ),
        (
            format!("{cs}\\Services\\Dhcp"),
            vec![("Start", HVal::Dword(2))],
        ),
        (
            format!("{cs}\\Services\\partmgr\\Parameters"),
            vec![("SanPolicy", HVal::Dword(1))],
        ),
        (
            format!("{cs}\\Control\\Terminal Server"),
            vec![("fDenyTSConnections", HVal::Dword(0))],
        ),
        (
            format!("{cs}\\Control\\Session Manager\\Power"),
            vec![("HiberbootEnabled", HVal::Dword(0))],
        ),
        (
            format!("{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{IFACE}"),
            vec![
                ("EnableDHCP", HVal::Dword(1)),
                ("IPAddress", HVal::Multi(vec!["0.0.0.0".into()])),
            ],
        ),
    ];
    for service in ["storvsc", "vmbus", "storflt", "intelide", "atapi"] {
        keys.push((
            format!("{cs}\\Services\\{service}"),
            vec![("Start", HVal::Dword(0)), ("Type", HVal::Dword(1))],
        ));
    }
    edit(&mut keys);
    let refs: Vec<(&str, Vec<(&str, HVal)>)> =
        keys.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    build_hive(path, &refs);
}
