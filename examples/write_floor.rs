//! The least time any converter can take to make a fixed VHD of a flat file here: write
//! the file's data ranges (found with SEEK_DATA and SEEK_HOLE) from one buffer already in
//! memory, at the same offsets, into a new file, then append a 512-byte footer. Nothing is
//! read and nothing is checked, so only the output file system's cost is left.
//! bench/bench.py compares vdconv and qemu-img with it.
//!
//! Usage: cargo run --release --example write_floor -- FLAT-EXTENT OUTPUT
//! Prints: bytes written, seconds, GB/s. OUTPUT is removed before timing and after.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

const PIECE: u64 = 1 << 20;

/// The file's data ranges as (offset, length), as the file system reports them.
fn data_ranges(file: &File, size: u64) -> Vec<(u64, u64)> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        // SAFETY: lseek on an open descriptor; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after pos
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = (hole as u64).min(size);
        ranges.push((data as u64, end - data as u64));
        pos = end;
    }
    ranges
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(flat), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: write_floor FLAT-EXTENT OUTPUT");
        std::process::exit(2);
    };
    let src = File::open(&flat).expect("open the flat extent");
    let size = src.metadata().expect("its size").len();
    let ranges = data_ranges(&src, size);
    let buf = vec![0x5a_u8; PIECE as usize];
    let _ = std::fs::remove_file(&out);
    let start = Instant::now();
    let dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&out)
        .expect("create the output");
    let mut written = 0u64;
    for &(offset, len) in &ranges {
        let mut at = offset;
        while at < offset + len {
            let n = PIECE.min(offset + len - at);
            dst.write_all_at(&buf[..n as usize], at).expect("write");
            at += n;
        }
        written += len;
    }
    dst.set_len(size).expect("set the length");
    dst.write_all_at(&[0u8; 512], size)
        .expect("write the footer");
    let secs = start.elapsed().as_secs_f64();
    drop(dst);
    let _ = std::fs::remove_file(&out);
    println!(
        "{written} bytes in {} ranges written in {secs:.3} s: {:.2} GB/s",
        ranges.len(),
        written as f64 / secs / 1e9
    );
}
