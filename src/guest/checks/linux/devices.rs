//! Device names as fstab, crypttab and the kernel command line spell them: which survive
//! the move (UUID, LABEL, LVM names) and which are bound to VMware's hardware, and which
//! volume of the disk a name means.

use crate::guest::volume::Volume;

/// How a device name behaves after the move (GUEST.md 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// UUID=, LABEL=, PARTUUID=, by-uuid, LVM names, ...: content-derived.
    Stable,
    /// /dev/sdX, /dev/disk/by-path, VMware by-id names: the reason why.
    HardwareBound(String),
    /// Not a block device (tmpfs, proc, nfs server:/path, none).
    NotADevice,
}

pub fn classify(spec: &str) -> DeviceName {
    let spec = spec.trim_matches('"');
    let upper = spec.to_ascii_uppercase();
    if ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "ID="]
        .iter()
        .any(|p| upper.starts_with(p))
    {
        return DeviceName::Stable;
    }
    let Some(dev) = spec.strip_prefix("/dev/") else {
        return DeviceName::NotADevice;
    };
    if let Some(id) = dev.strip_prefix("disk/by-id/") {
        let stable = [
            "dm-uuid-",
            "dm-name-",
            "lvm-pv-uuid-",
            "md-uuid-",
            "md-name-",
        ]
        .iter()
        .any(|p| id.starts_with(p));
        return if stable {
            DeviceName::Stable
        } else {
            DeviceName::HardwareBound(format!(
                "{spec} is a hardware ID ({}) that the new disk will not have",
                if id.contains("6000c29") || id.to_ascii_lowercase().contains("vmware") {
                    "VMware's"
                } else {
                    "the old controller's"
                }
            ))
        };
    }
    if dev.starts_with("disk/by-path/") {
        return DeviceName::HardwareBound(format!("{spec} names the VMware controller's bus path"));
    }
    if dev.starts_with("disk/") || dev.starts_with("mapper/") {
        return DeviceName::Stable;
    }
    if is_kernel_disk_name(dev) {
        return DeviceName::HardwareBound(format!(
            "{spec} is a kernel disk name, whose order and bus change with the controller"
        ));
    }
    // /dev/vg/lv, /dev/md0, /dev/root, ...
    DeviceName::Stable
}

/// sdX, hdX, xvdX, vdX (with a partition number or not), nvme0n1[pN].
fn is_kernel_disk_name(dev: &str) -> bool {
    for prefix in ["sd", "hd", "xvd", "vd"] {
        if let Some(rest) = dev.strip_prefix(prefix) {
            let letters = rest.chars().take_while(|c| c.is_ascii_lowercase()).count();
            let tail = &rest[letters..];
            if letters > 0 && tail.chars().all(|c| c.is_ascii_digit()) {
                return true;
            }
        }
    }
    dev.strip_prefix("nvme")
        .is_some_and(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// The volume a device name means, when it can be told from the disk alone.
pub fn find_volume<'v>(spec: &str, volumes: &'v [Volume]) -> Option<&'v Volume> {
    let spec = spec.trim_matches('"');
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) if !k.starts_with('/') => {
            (k.to_ascii_uppercase(), unescape(v.trim_matches('"')))
        }
        _ => {
            let dev = spec.strip_prefix("/dev/")?;
            if let Some(v) = dev.strip_prefix("disk/by-uuid/") {
                ("UUID".into(), unescape(v))
            } else if let Some(v) = dev.strip_prefix("disk/by-label/") {
                ("LABEL".into(), unescape(v))
            } else if let Some(v) = dev.strip_prefix("disk/by-partuuid/") {
                ("PARTUUID".into(), unescape(v))
            } else if let Some(v) = dev.strip_prefix("disk/by-partlabel/") {
                ("PARTLABEL".into(), unescape(v))
            } else if let Some(v) = dev.strip_prefix("disk/by-id/dm-name-") {
                ("MAPPER".into(), v.to_string())
            } else if let Some(v) = dev.strip_prefix("mapper/") {
                ("MAPPER".into(), v.to_string())
            } else if let Some((vg, lv)) = dev.split_once('/').filter(|(_, lv)| !lv.contains('/')) {
                ("LVM".into(), format!("{vg}/{lv}"))
            } else {
                return None;
            }
        }
    };
    volumes.iter().find(|v| match key.as_str() {
        "UUID" => {
            v.fs.as_ref()
                .and_then(|f| f.uuid())
                .is_some_and(|u| u.eq_ignore_ascii_case(&value))
        }
        "LABEL" => {
            v.fs.as_ref()
                .and_then(|f| f.label())
                .is_some_and(|l| l == value)
        }
        "PARTUUID" => v
            .part_uuid
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(&value)),
        "PARTLABEL" => v.part_label.as_deref() == Some(value.as_str()),
        "MAPPER" => v
            .lvm
            .as_ref()
            .is_some_and(|(vg, lv)| mapper_name(vg, lv) == value),
        "LVM" => v
            .lvm
            .as_ref()
            .is_some_and(|(vg, lv)| format!("{vg}/{lv}") == value),
        _ => false,
    })
}

/// device-mapper's name for an LV: dashes inside names doubled, joined by one dash.
pub fn mapper_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// udev's `\x20`-style escapes in by-label names and fstab's octal `\040`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let (code, len) = if let Some(hex) = tail.strip_prefix('x') {
            (hex.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()), 3)
        } else {
            (tail.get(..3).and_then(|o| u8::from_str_radix(o, 8).ok()), 3)
        };
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = tail.get(len..).unwrap_or("");
            }
            None => {
                out.push('\\');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One line of fstab or crypttab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabEntry {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Whitespace-separated fields of the non-comment lines, with fstab's octal escapes.
pub fn parse_tab(text: &str) -> Vec<TabEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            Some(TabEntry {
                line: i + 1,
                fields: l.split_whitespace().map(unescape).collect(),
            })
        })
        .take(10_000)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        for stable in [
            "UUID=1234-ABCD",
            "LABEL=root",
            "PARTUUID=abc",
            "/dev/mapper/rhel-root",
            "/dev/rhel/root",
            "/dev/disk/by-uuid/1",
            "/dev/disk/by-id/dm-uuid-LVM-abc",
        ] {
            assert_eq!(classify(stable), DeviceName::Stable, "{stable}");
        }
        for bound in [
            "/dev/sda2",
            "/dev/sdab",
            "/dev/hda1",
            "/dev/xvda1",
            "/dev/vdb",
            "/dev/nvme0n1p2",
            "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1",
            "/dev/disk/by-id/scsi-36000c29d1234-part1",
            "/dev/disk/by-id/wwn-0x6000c29abc",
        ] {
            assert!(
                matches!(classify(bound), DeviceName::HardwareBound(_)),
                "{bound}"
            );
        }
        assert_eq!(classify("tmpfs"), DeviceName::NotADevice);
        assert_eq!(classify("server:/export"), DeviceName::NotADevice);
        assert_eq!(mapper_name("my-vg", "root"), "my--vg-root");
        assert_eq!(unescape("a\\040b\\x20c"), "a b c");
    }
}
