//! Shared body of the image fuzz targets: write the input as a file in a folder of its
//! own, open it as vdconv opens any image, read it through, describe and check it.

use std::path::PathBuf;

use vdconv::{Cancel, OpenOptions};

/// Virtual bytes read per input at most: enough to cross many grains and blocks.
const READ_LIMIT: u64 = 8 << 20;

pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vdconv-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("image")
}

pub fn run(data: &[u8]) {
    let path = scratch();
    std::fs::write(&path, data).unwrap();
    let options = OpenOptions::default();
    if let Ok(mut disk) = vdconv::open(&path, &options) {
        let size = disk.virtual_size();
        let mut runs = Vec::new();
        let _ = disk.map(0, size.min(1 << 40), &mut runs);
        let mut buf = vec![0u8; 64 * 1024];
        let mut offset = 0;
        while offset < size.min(READ_LIMIT) {
            let n = (size - offset).min(buf.len() as u64) as usize;
            if disk.read_at(offset, &mut buf[..n]).is_err() {
                break;
            }
            offset += n as u64;
        }
        let _ = vdconv::info::describe(disk.as_mut(), &Cancel::new());
    }
    let _ = vdconv::check::check(&path, &options);
    let _ = vdconv::check::check_azure(&path, &Cancel::new());
}
