//! VMDK rules: the header fields and descriptor (through the reader, which refuses what
//! is broken), then grain directory and table ranges, overlaps and redundant copies.

use std::path::Path;

use super::{Findings, as_finding};
use crate::disk::InputFile;
use crate::error::Result;
use crate::vmdk::{OpenOptions, VmdkDisk};

/// At most this many table findings per extent: a wrecked table says enough by then.
const LIMIT: usize = 100;

pub fn check(
    file: InputFile,
    format: crate::detect::Format,
    options: OpenOptions,
    f: &mut Findings,
) -> Result<()> {
    let checked = file.path().to_path_buf();
    let disk = match VmdkDisk::open(file, format, options) {
        Ok(d) => d,
        Err(e) => {
            f.0.push(as_finding(e)?);
            return Ok(());
        }
    };
    for extent in disk.sparse_extents() {
        // Name the extent's file when it is not the one being checked (split disks).
        let path: &Path = extent.file().path();
        let prefix = if path == checked {
            String::new()
        } else {
            format!("{}: ", path.display())
        };
        for (rule, offset, message) in extent.check(LIMIT)? {
            f.add(rule, offset, format!("{prefix}{message}"));
        }
    }
    Ok(())
}
