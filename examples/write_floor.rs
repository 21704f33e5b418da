//! The least time any converter can take to make a fixed VHD of a flat file here: write
//! the file's data ranges (found with SEEK_DATA and SEEK_HOLE) from one buffer already in
//! memory, at the same offsets, into a new file, then append a 512-byte footer. Nothing is
//! read and nothing is checked, so only the output file system's cost is left.
//! bench/bench.py compares vdconv and qemu-img with it.
//!
//! It then writes the same pieces again from two threads into one file: on tmpfs that is
//! no faster, because writes to one file take its inode lock in turn, which is why a
//! converter cannot beat the first figure by writing from more threads.
//!
//! Usage: cargo run --release --example write_floor -- FLAT-EXTENT OUTPUT
//! Prints two lines: bytes written, seconds and GB/s from one thread; seconds from two.
//! OUTPUT is removed before each timing and after.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use vdconv::disk::{InputFile, RunKind};

const PIECE: u64 = 1 << 20;

/// The file's data ranges as (offset, length), from the same SEEK_DATA/SEEK_HOLE map
/// vdconv reads flat extents by.
fn data_ranges(file: &InputFile) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    file.map_holes(0, file.len(), 0, &mut runs);
    runs.iter()
        .filter(|r| r.kind == RunKind::Data)
        .map(|r| (r.offset, r.len))
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(flat), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: write_floor FLAT-EXTENT OUTPUT");
        std::process::exit(2);
    };
    let src = InputFile::open(Path::new(&flat)).expect("open the flat extent");
    let size = src.len();
    let ranges = data_ranges(&src);
    let pieces = pieces(&ranges);
    let written: u64 = pieces.iter().map(|&(_, n)| n).sum();
    let one = timed_write(&out, size, &pieces, 1);
    let two = timed_write(&out, size, &pieces, 2);
    println!(
        "{written} bytes in {} ranges written in {one:.3} s: {:.2} GB/s",
        ranges.len(),
        written as f64 / one / 1e9
    );
    println!("the same from two threads into one file: {two:.3} s");
}

/// The ranges cut into writes of at most PIECE bytes.
fn pieces(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(offset, len) in ranges {
        let mut at = offset;
        while at < offset + len {
            let n = PIECE.min(offset + len - at);
            out.push((at, n));
            at += n;
        }
    }
    out
}

/// Creates `out`, writes `pieces` from `threads` threads (piece i from thread i mod
/// threads), sets the length and appends a footer; returns the seconds that took.
fn timed_write(out: &str, size: u64, pieces: &[(u64, u64)], threads: usize) -> f64 {
    let buf = vec![0x5a_u8; PIECE as usize];
    let _ = std::fs::remove_file(out);
    let start = Instant::now();
    let dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .expect("create the output");
    std::thread::scope(|s| {
        for t in 0..threads {
            let (dst, buf) = (&dst, &buf);
            s.spawn(move || {
                for &(at, n) in pieces.iter().skip(t).step_by(threads) {
                    dst.write_all_at(&buf[..n as usize], at).expect("write");
                }
            });
        }
    });
    dst.set_len(size).expect("set the length");
    dst.write_all_at(&[0u8; 512], size)
        .expect("write the footer");
    let secs = start.elapsed().as_secs_f64();
    drop(dst);
    let _ = std::fs::remove_file(out);
    secs
}
