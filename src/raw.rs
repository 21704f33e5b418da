//! Raw disk images: the file is the disk, byte for byte. Never detected (any file would
//! match); read only when the user names the format (`-f raw`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::disk::info::{ExtentInfo, ImageInfo};
use crate::disk::{Disk, InputFile, Run};
use crate::error::Result;

pub struct RawDisk {
    file: InputFile,
}

impl RawDisk {
    pub fn open(file: InputFile) -> Self {
        RawDisk { file }
    }
}

impl Disk for RawDisk {
    fn virtual_size(&self) -> u64 {
        self.file.len()
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        // Holes in the file read as zeros: the file system says where they are.
        self.file.map_holes(offset, len, offset, out);
        Ok(())
    }

    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset, "raw data")
    }

    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        let allocated = crate::disk::allocated_bytes(self, cancel)?;
        let size = self.file.len();
        Ok(ImageInfo {
            file: self.file.path().display().to_string(),
            format: "raw",
            layout: "raw".into(),
            virtual_size: size,
            allocated_bytes: allocated,
            extents: vec![ExtentInfo {
                access: "RW".into(),
                kind: "RAW".into(),
                start: 0,
                size,
                file: Some(self.file.path().display().to_string()),
                file_offset: 0,
            }],
            vmdk: None,
            vhd: None,
            vhdx: None,
            warnings: Vec::new(),
        })
    }

    fn file_range(&self, offset: u64, _len: u64) -> Option<(Arc<File>, u64)> {
        Some((self.file.shared(), offset))
    }

    fn warnings(&self) -> &[String] {
        &[]
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.file.path().to_path_buf()]
    }
}
