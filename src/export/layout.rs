//! Where an export's disks go. One disk (or one picked with `--disk`): DST is the file to
//! write, as for any conversion, unless DST is a folder that exists (or ends in `/`).
//! Several disks: DST is a folder, created if missing, holding one image per disk named
//! after its file in the package (`vm-disk1.vmdk` becomes `vm-disk1.vhdx`); the format
//! then comes from `-O`, else from `--target` (azure: VHD; hyperv-gen2: VHDX), else VHDX.
//! Every disk gets its own validated plan from the same request.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ova::Envelope;
use crate::plan::{ConvertPlan, ConvertRequest, OutputFormat};
use crate::target::Target;

/// A disk of the descriptor, as layout needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskName {
    pub disk_id: String,
    pub file_id: Option<String>,
    /// The References/File href (None: a blank disk).
    pub href: Option<String>,
}

impl DiskName {
    /// The disks of a descriptor, in DiskSection order.
    pub fn all(envelope: &Envelope) -> Vec<DiskName> {
        envelope
            .disks
            .iter()
            .map(|d| DiskName {
                disk_id: d.disk_id.clone(),
                file_id: d.file_ref.clone(),
                href: d
                    .file_ref
                    .as_deref()
                    .and_then(|id| envelope.file(id))
                    .map(|f| f.href.clone()),
            })
            .collect()
    }

    /// How messages name it: its file, or its id for a blank disk.
    pub fn shown(&self) -> &str {
        self.href.as_deref().unwrap_or(&self.disk_id)
    }

    /// The output's name without extension: the file's name without its extensions
    /// (`.vmdk`, `.gz`, …), else the disk id; only characters safe in a file name.
    pub fn stem(&self) -> String {
        let file = self
            .href
            .as_deref()
            .map(crate::ova::names::file_name)
            .unwrap_or("");
        let mut stem = file;
        for ext in [".gz", ".vmdk", ".vhdx", ".vhd", ".img", ".raw"] {
            if stem.len() > ext.len() && stem.to_ascii_lowercase().ends_with(ext) {
                stem = &stem[..stem.len() - ext.len()];
            }
        }
        let stem = if stem.is_empty() || stem.starts_with('.') {
            &self.disk_id
        } else {
            stem
        };
        let clean: String = stem
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "._-+ ".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.is_empty() || clean.starts_with('.') {
            format!("disk-{clean}")
        } else {
            clean
        }
    }
}

/// The disks chosen and where each goes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// (index in DiskSection order, the disk's plan).
    pub disks: Vec<(usize, ConvertPlan)>,
    /// The folder the outputs go into, when DST is one; whether it must be created.
    pub folder: Option<(PathBuf, bool)>,
}

/// Picks the disk `--disk` names: a 1-based number in DiskSection order, or a disk id,
/// file id or file name.
pub fn pick(disks: &[DiskName], which: &str) -> Result<usize> {
    let by_number = which
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=disks.len()).contains(n))
        .map(|n| n - 1);
    let found = by_number
        .or_else(|| disks.iter().position(|d| d.disk_id == which))
        .or_else(|| {
            disks
                .iter()
                .position(|d| d.file_id.as_deref() == Some(which))
        })
        .or_else(|| {
            disks.iter().position(|d| {
                d.href
                    .as_deref()
                    .is_some_and(|h| h == which || crate::ova::names::file_name(h) == which)
            })
        });
    found.ok_or_else(|| {
        let listed: Vec<String> = disks
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{} {} ({})", i + 1, d.disk_id, d.shown()))
            .collect();
        Error::usage(
            Some("--disk"),
            format!(
                "no disk {which:?} in the export; it has: {}",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            ),
        )
    })
}

/// Decides where each chosen disk goes and validates its plan.
pub fn plan(
    disks: &[DiskName],
    which: Option<&str>,
    dst: &Path,
    req: &ConvertRequest,
) -> Result<Layout> {
    if disks.is_empty() {
        return Err(Error::unsupported(
            dst,
            "the export's descriptor lists no disks; there is nothing to convert",
        ));
    }
    let chosen: Vec<usize> = match which {
        Some(w) => vec![pick(disks, w)?],
        None => (0..disks.len()).collect(),
    };
    if req.in_place {
        return Err(Error::usage(
            Some("--in-place"),
            "turns a flat VMDK file into a VHD; the disks of an export are inside it",
        ));
    }
    let is_dir = std::fs::metadata(dst).is_ok_and(|m| m.is_dir());
    let says_dir = dst.as_os_str().as_encoded_bytes().ends_with(b"/");
    if chosen.len() == 1 && !is_dir && !says_dir {
        let plan = ConvertPlan::new(dst, req)?;
        return Ok(Layout {
            disks: vec![(chosen[0], plan)],
            folder: None,
        });
    }
    if !is_dir && std::fs::symlink_metadata(dst).is_ok() {
        return Err(Error::output(
            crate::error::ErrorKind::NotAFile,
            dst,
            format!(
                "exists and is not a folder; the export has {} disks, which go into a folder (or pick one with --disk)",
                chosen.len()
            ),
        ));
    }
    let format = req.format.unwrap_or(match req.target {
        Some(Target::Azure) => OutputFormat::Vhd,
        _ => OutputFormat::Vhdx,
    });
    let mut planned: Vec<(usize, ConvertPlan)> = Vec::with_capacity(chosen.len());
    for i in chosen {
        let name = format!("{}.{}", disks[i].stem(), format.name());
        let path = dst.join(&name);
        if let Some((j, _)) = planned.iter().find(|(_, p)| p.destination == path) {
            return Err(Error::usage(
                None,
                format!(
                    "disks {} ({}) and {} ({}) would both be written to {}; convert them one at a time with --disk",
                    j + 1,
                    disks[*j].shown(),
                    i + 1,
                    disks[i].shown(),
                    path.display()
                ),
            ));
        }
        let req = ConvertRequest {
            format: Some(format),
            ..req.clone()
        };
        planned.push((i, ConvertPlan::new(&path, &req)?));
    }
    Ok(Layout {
        disks: planned,
        folder: Some((dst.to_path_buf(), !is_dir)),
    })
}

/// Refuses, before any work, destinations that exist when --force was not given (the
/// output layer refuses them too, but only when their turn comes), and, even with
/// --force, a destination that is the package itself (`src`).
pub fn refuse_existing(layout: &Layout, src: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let source = std::fs::metadata(src).ok();
    for (_, plan) in &layout.disks {
        let Ok(meta) = std::fs::metadata(&plan.destination) else {
            continue;
        };
        if source
            .as_ref()
            .is_some_and(|s| s.is_file() && s.dev() == meta.dev() && s.ino() == meta.ino())
        {
            return Err(Error::output_is_input(&plan.destination));
        }
        if !plan.force {
            return Err(Error::exists(&plan.destination));
        }
    }
    Ok(())
}

/// The folder made for the outputs; removed again when the run fails and it is still
/// empty (a failed run leaves nothing behind).
pub struct MadeFolder {
    path: Option<PathBuf>,
}

impl MadeFolder {
    /// Creates the layout's folder when it must be.
    pub fn create(layout: &Layout) -> Result<Self> {
        match &layout.folder {
            Some((path, true)) => {
                std::fs::create_dir_all(path)
                    .map_err(|e| Error::output_io(path, "(creating the folder)", e))?;
                Ok(MadeFolder {
                    path: Some(path.clone()),
                })
            }
            _ => Ok(MadeFolder { path: None }),
        }
    }

    /// The run succeeded: keep it.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for MadeFolder {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_dir(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disks() -> Vec<DiskName> {
        vec![
            DiskName {
                disk_id: "vmdisk1".into(),
                file_id: Some("file1".into()),
                href: Some("vm-disk1.vmdk".into()),
            },
            DiskName {
                disk_id: "vmdisk2".into(),
                file_id: Some("file2".into()),
                href: Some("sub/data.vmdk.gz".into()),
            },
            DiskName {
                disk_id: "blank/3".into(),
                file_id: None,
                href: None,
            },
        ]
    }

    #[test]
    fn outputs_are_named_after_the_files() {
        let d = disks();
        assert_eq!(d[0].stem(), "vm-disk1");
        assert_eq!(d[1].stem(), "data");
        assert_eq!(d[2].stem(), "blank_3");
        assert_eq!(pick(&d, "2").unwrap(), 1);
        assert_eq!(pick(&d, "vmdisk1").unwrap(), 0);
        assert_eq!(pick(&d, "file2").unwrap(), 1);
        assert_eq!(pick(&d, "data.vmdk.gz").unwrap(), 1);
        let e = pick(&d, "4").unwrap_err();
        assert!(e.to_string().contains("1 vmdisk1 (vm-disk1.vmdk)"), "{e}");
    }

    #[test]
    fn several_disks_go_into_a_folder_in_the_asked_format() {
        let tmp = std::env::temp_dir().join(format!("vdconv-layout-{}", std::process::id()));
        let req = ConvertRequest::default();
        let l = plan(&disks(), None, &tmp, &req).unwrap();
        assert_eq!(l.folder, Some((tmp.clone(), true)));
        assert_eq!(l.disks[0].1.destination, tmp.join("vm-disk1.vhdx"));
        assert_eq!(l.disks[2].1.format, OutputFormat::Vhdx);
        let azure = ConvertRequest {
            target: Some(Target::Azure),
            ..Default::default()
        };
        let l = plan(&disks(), None, &tmp, &azure).unwrap();
        assert_eq!(l.disks[1].1.destination, tmp.join("data.vhd"));
        // One disk picked: DST is the file.
        let l = plan(&disks(), Some("1"), &tmp.join("x.vhd"), &req).unwrap();
        assert_eq!(l.folder, None);
        assert_eq!(l.disks[0].1.format, OutputFormat::Vhd);
        // A file name without an extension for one disk: as for any conversion.
        assert!(plan(&disks(), Some("1"), &tmp.join("x"), &req).is_err());
    }
}
