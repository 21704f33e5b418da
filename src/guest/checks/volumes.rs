//! X1: volumes that cannot be inspected (encrypted, RAID members, failed to open), and
//! the volume summary of the report.

use super::findings::{B, Findings, I, W, at, sev};
use crate::guest::report::VolumeReport;
use crate::guest::volume::{Content, Volume};

pub fn summary(volumes: &[Volume]) -> Vec<VolumeReport> {
    volumes
        .iter()
        .map(|v| VolumeReport {
            name: v.name.clone(),
            content: format!("{:?}", v.content).to_lowercase(),
            fs: v.fs.as_ref().map(|f| f.kind().to_string()),
            uuid: v.fs.as_ref().and_then(|f| f.uuid()),
            label: v.fs.as_ref().and_then(|f| f.label()),
            partition_type: v.partition_type.clone(),
            lvm: v.lvm.as_ref().map(|(vg, lv)| format!("{vg}/{lv}")),
            problem: v.problem.clone(),
        })
        .collect()
}

pub fn findings(volumes: &[Volume], findings: &mut Findings) {
    for v in volumes {
        let loc = at(Some(&v.name), &v.name, None);
        match v.content {
            Content::BitLocker => findings.add(
                "volume-bitlocker",
                "X1",
                sev(W, W, W),
                format!("{} is BitLocker-encrypted and cannot be inspected; if its key is sealed in VMware's vTPM, Windows will ask for the recovery key", v.name),
                loc,
                "Have the recovery key at hand, or suspend BitLocker before the move.",
            ),
            Content::Luks => findings.add(
                "volume-luks",
                "X1",
                sev(W, W, W),
                format!("{} is LUKS-encrypted and cannot be inspected; a key sealed in the TPM will not unlock it after the move", v.name),
                loc,
                "Make sure a passphrase key slot exists.",
            ),
            Content::WindowsDynamic => findings.add(
                "windows-dynamic-disk",
                "W4",
                sev(B, B, B),
                format!("{} belongs to a Windows dynamic disk, which cannot be inspected and is not supported as a system disk", v.name),
                loc,
                "Convert the system disk to a basic disk before the move.",
            ),
            Content::MdRaid => findings.add(
                "volume-cannot-inspect",
                "X1",
                sev(I, I, I),
                format!("{} is a RAID member and was not inspected", v.name),
                loc,
                "Check the array's contents inside the guest.",
            ),
            _ => {
                if let Some(problem) = &v.problem {
                    findings.add(
                        "volume-cannot-inspect",
                        "X1",
                        sev(I, I, I),
                        format!("{} cannot be inspected: {problem}", v.name),
                        loc,
                        "Check this volume inside the guest.",
                    );
                }
            }
        }
    }
}
