//! The machine's all-core inflate throughput for a streamOptimized VMDK: every compressed
//! grain is read into memory first, then inflated on all cores with nothing else to do.
//! That is the ceiling for converting the file; bench/bench.py compares vdconv with it.
//!
//! Usage: cargo run --release --example inflate_ceiling -- STREAM.vmdk
//! Prints: grains, inflated bytes, seconds, GB/s.

use std::fs::File;
use std::io::Read;
use std::time::Instant;

use flate2::{Decompress, FlushDecompress};

const SECTOR: usize = 512;

/// The compressed grain records, found by walking markers from the end of the metadata.
fn records(data: &[u8]) -> Vec<&[u8]> {
    let over_head = u64::from_le_bytes(data[64..72].try_into().unwrap()) as usize;
    let mut pos = over_head.max(1) * SECTOR;
    let mut out = Vec::new();
    while pos + 16 <= data.len() {
        let size = u32::from_le_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        if size != 0 {
            if pos + 12 + size > data.len() {
                break;
            }
            out.push(&data[pos + 12..pos + 12 + size]);
            pos += (12 + size).div_ceil(SECTOR) * SECTOR;
            continue;
        }
        let sectors = u64::from_le_bytes(data[pos..pos + 8].try_into().unwrap()) as usize;
        let kind = u32::from_le_bytes(data[pos + 12..pos + 16].try_into().unwrap());
        if kind == 0 {
            break; // end of stream
        }
        pos += (sectors + 1) * SECTOR;
    }
    out
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: inflate_ceiling STREAM.vmdk");
    let mut data = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .expect("read the file");
    let grain = u64::from_le_bytes(data[20..28].try_into().unwrap()) as usize * SECTOR;
    let records = records(&data);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = records.len().div_ceil(workers).max(1);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let mut d = Decompress::new(true);
                    let mut out = vec![0u8; grain];
                    let mut n = 0u64;
                    for r in part {
                        d.reset(true);
                        d.decompress(r, &mut out, FlushDecompress::Finish)
                            .expect("inflate");
                        n += d.total_out();
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} grains, {} bytes inflated in {:.3} s on {} threads: {:.2} GB/s",
        records.len(),
        total,
        secs,
        workers,
        total as f64 / secs / 1e9
    );
}
