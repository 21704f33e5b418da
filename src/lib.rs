//! vdconv: convert VMware virtual disks (VMDK) to VHD and VHDX, exactly.
//!
//! Open any supported image with [`open`], which detects the format from the content, then
//! [`convert::convert`] it, or ask it for [`info::ImageInfo`].

pub mod compare;
pub mod convert;
pub mod disk;
pub mod error;
pub mod info;
pub mod output;
pub mod size;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
pub mod writer;

use std::path::Path;

pub use disk::Disk;
pub use error::{Error, ExitClass, Result};
pub use vmdk::OpenOptions;

use disk::InputFile;

/// Largest text descriptor read: real ones are a few hundred bytes.
const MAX_TEXT_DESCRIPTOR: u64 = 1 << 20;

/// Opens an image, detecting its format from its content (never from its name).
pub fn open(path: &Path, options: OpenOptions) -> Result<Box<dyn Disk>> {
    let file = InputFile::open(path)?;
    let mut head = [0u8; 512];
    let n = file.len().min(512) as usize;
    file.read_exact_at(&mut head[..n], 0, "file header")?;
    let head = &head[..n];
    if head.starts_with(vmdk::header::MAGIC) {
        return Ok(Box::new(vmdk::VmdkDisk::open_sparse(file)?));
    }
    if head.starts_with(b"COWD") {
        return Err(Error::unsupported(
            path,
            "is an ESXi vmfsSparse (COWD) snapshot delta; not supported yet",
        ));
    }
    if head.starts_with(&0xCAFE_BABEu32.to_le_bytes()) {
        return Err(Error::unsupported(
            path,
            "is an ESXi seSparse snapshot delta; not supported yet",
        ));
    }
    if head.starts_with(vhdx::format::FILE_SIGNATURE) {
        return Ok(Box::new(vhdx::read::VhdxDisk::open(file)?));
    }
    if head.starts_with(vhd::footer::COOKIE) || has_vhd_footer(&file)? {
        return Ok(Box::new(vhd::read::VhdDisk::open(file)?));
    }
    if looks_like_descriptor(head) {
        if file.len() > MAX_TEXT_DESCRIPTOR {
            return Err(Error::corrupt(
                path,
                "descriptor",
                0,
                format!(
                    "text descriptor is {} bytes; at most {MAX_TEXT_DESCRIPTOR} accepted",
                    file.len()
                ),
            ));
        }
        let mut text = vec![0u8; file.len() as usize];
        file.read_exact_at(&mut text, 0, "descriptor")?;
        return Ok(Box::new(vmdk::VmdkDisk::open_descriptor(
            path, &text, options,
        )?));
    }
    Err(Error::unsupported(
        path,
        "file header at offset 0: format not recognised (no KDMV, descriptor, conectix or vhdxfile signature)",
    ))
}

fn has_vhd_footer(file: &InputFile) -> Result<bool> {
    if file.len() < 512 {
        return Ok(false);
    }
    let mut cookie = [0u8; 8];
    file.read_exact_at(&mut cookie, file.len() - 512, "VHD footer")?;
    Ok(&cookie == b"conectix")
}

/// A text descriptor starts with its comment line or with key=value lines; it is text.
fn looks_like_descriptor(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    trimmed.starts_with("# disk descriptorfile")
        || (trimmed.contains("createtype") && !head.contains(&0))
        || (trimmed.starts_with("version") && trimmed.contains("extent"))
}
