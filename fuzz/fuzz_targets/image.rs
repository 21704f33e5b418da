//! Shared body of the image fuzz targets: write the input as a file in a folder of its
//! own, open it as vdconv opens any image, read it through, describe and check it.
//!
//! Each target keeps to the formats it is named for: an input whose signatures say
//! another format returns at once. Without that, coverage feedback led the vhd and vhdx
//! targets into the text descriptor parser (any text with "createType" in it is a
//! descriptor), which then took 92% of their time at 300 inputs a second, parsing the
//! same 250 KiB of text three times per input; the descriptor parser has a target of its
//! own.

use std::path::{Path, PathBuf};

use vdconv::disk::InputFile;
use vdconv::{Cancel, Format, OpenOptions};

/// Virtual bytes read per input at most: enough to cross many grains, blocks and tables
/// (the contract target reads ranges anywhere).
const READ_LIMIT: u64 = 2 << 20;

/// The input as a file, in memory: one memfd per process, rewritten for each input and
/// opened through /proc like any path (no disk writes, so many more runs a second).
pub fn scratch(data: &[u8]) -> PathBuf {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::OnceLock;
    static FILE: OnceLock<std::sync::Mutex<std::fs::File>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        // SAFETY: a NUL-terminated name; the descriptor is owned by the File.
        let fd = unsafe { libc::memfd_create(c"vdconv-fuzz".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create");
        // SAFETY: a fresh descriptor nothing else owns.
        std::sync::Mutex::new(unsafe { std::fs::File::from_raw_fd(fd) })
    });
    let f = file.lock().unwrap();
    // Emptied first so that no page of the previous input stays; zero pages stay holes.
    f.set_len(0).unwrap();
    f.set_len(data.len() as u64).unwrap();
    vdconv::disk::input::write_nonzero_pages(&f, data).unwrap();
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// Whether the input at `path` is one of `formats` by its signatures (the check vdconv
/// makes before choosing a reader).
pub fn is_one_of(path: &Path, formats: &[Format]) -> bool {
    let Ok(file) = InputFile::open(path) else {
        return false;
    };
    matches!(vdconv::detect::identify(&file), Ok(Some(f)) if formats.contains(&f))
}

/// Opens, maps, reads, describes and checks the input when it is one of `formats`.
#[allow(dead_code)]
pub fn run(data: &[u8], formats: &[Format]) {
    let path = scratch(data);
    if !is_one_of(&path, formats) {
        return;
    }
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
