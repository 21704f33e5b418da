//! Format detection from content, never from the file's name.

use crate::disk::InputFile;
use crate::error::{Error, Result};
use crate::{vhd, vhdx, vmdk};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A KDMV sparse file (with or without its own descriptor).
    VmdkSparse,
    /// A text descriptor naming extent files.
    VmdkDescriptor,
    Vhd,
    Vhdx,
    /// A raw disk image: never detected, only named (`-f raw`).
    Raw,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::VmdkSparse | Format::VmdkDescriptor => "vmdk",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Raw => "raw",
        }
    }
}

/// Identifies the file, refusing by name the formats vdconv recognises but does not read,
/// and naming the descriptor when the file is an extent of one.
pub fn detect(file: &InputFile) -> Result<Format> {
    if let Some(format) = identify(file)? {
        return Ok(format);
    }
    if let Some(descriptor) = vmdk::extents::descriptor_naming(file.path()) {
        return Err(Error::is_extent(
            file.path(),
            format!(
                "is an extent of {}, which names it; convert that descriptor instead",
                descriptor.display()
            ),
        ));
    }
    Err(Error::unsupported(
        file.path(),
        "file header at offset 0: format not recognised (no KDMV, descriptor, conectix or vhdxfile signature); if it is a raw disk image, pass -f raw",
    ))
}

/// The format the file's signatures say, or None when none matches.
pub fn identify(file: &InputFile) -> Result<Option<Format>> {
    let mut head = [0u8; 512];
    let n = file.len().min(512) as usize;
    file.read_exact_at(&mut head[..n], 0, "file header")?;
    let head = &head[..n];
    if head.starts_with(vmdk::header::MAGIC) {
        return Ok(Some(Format::VmdkSparse));
    }
    // Redo logs carry no descriptor: their descriptor (which names the parent) is what
    // to open.
    for (magic, what) in [
        (
            b"COWD".as_slice(),
            "an ESXi vmfsSparse (COWD) redo log extent",
        ),
        (
            &0xCAFE_BABEu32.to_le_bytes(),
            "an ESXi seSparse redo log extent",
        ),
    ] {
        if head.starts_with(magic) {
            let detail = match vmdk::extents::descriptor_naming(file.path()) {
                Some(d) => {
                    return Err(Error::is_extent(
                        file.path(),
                        format!("is {what} of {}; open that descriptor instead", d.display()),
                    ));
                }
                None => format!(
                    "is {what}, without the descriptor that names it and its parent; open that descriptor instead"
                ),
            };
            return Err(Error::unsupported(file.path(), detail));
        }
    }
    if head.starts_with(vhdx::format::FILE_SIGNATURE) {
        return Ok(Some(Format::Vhdx));
    }
    if head.starts_with(vhd::footer::COOKIE) || has_vhd_footer(file)? {
        return Ok(Some(Format::Vhd));
    }
    if looks_like_descriptor(head) {
        return Ok(Some(Format::VmdkDescriptor));
    }
    Ok(None)
}

fn has_vhd_footer(file: &InputFile) -> Result<bool> {
    if file.len() < 512 {
        return Ok(false);
    }
    let mut cookie = [0u8; 8];
    file.read_exact_at(&mut cookie, file.len() - 512, "VHD footer")?;
    Ok(&cookie == vhd::footer::COOKIE)
}

/// A text descriptor starts with its comment line or with key=value lines; it is text.
fn looks_like_descriptor(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    trimmed.starts_with("# disk descriptorfile")
        || (trimmed.contains("createtype") && !head.contains(&0))
        || (trimmed.starts_with("version") && trimmed.contains("extent"))
}
