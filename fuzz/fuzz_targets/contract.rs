//! Fuzz target for the `Disk` contract: the first 32 bytes choose ranges, the rest is an
//! image. A range inside the disk maps to runs that cover it exactly, in order, and reads
//! without panicking; a range outside is an error, never bytes from beyond the disk.
//!
//! Binary images only: a text descriptor beside a memfd can name only ZERO extents
//! (nothing else exists there), and parsing fuzzed text took 64% of this target's time;
//! the descriptor parser has its own target.
#![no_main]

#[path = "image.rs"]
mod image;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 32 {
        return;
    }
    let (ranges, bytes) = data.split_at(32);
    let path = image::scratch(bytes);
    use vdconv::Format::{Vhd, Vhdx, VmdkSparse};
    if !image::is_one_of(&path, &[VmdkSparse, Vhd, Vhdx]) {
        return;
    }
    let Ok(mut disk) = vdconv::open(&path, &vdconv::OpenOptions::default()) else {
        return;
    };
    let size = disk.virtual_size();
    for pair in ranges.chunks_exact(8) {
        let a = u32::from_le_bytes(pair[0..4].try_into().unwrap());
        let b = u16::from_le_bytes(pair[4..6].try_into().unwrap());
        let far = pair[6] & 1 == 1;
        // Offsets near the end, and past it, are where bugs live.
        let offset = if far {
            size.wrapping_sub(u64::from(a % 4096))
        } else {
            u64::from(a) % size.max(1)
        };
        let len = u64::from(b);
        let inside = offset.checked_add(len).is_some_and(|e| e <= size);
        let mut runs = Vec::new();
        match disk.map(offset, len, &mut runs) {
            Ok(()) => {
                assert!(inside, "map past the end accepted: {offset}+{len} of {size}");
                let mut at = offset;
                for r in &runs {
                    assert_eq!(r.offset, at, "runs in order, without gaps");
                    assert!(r.len > 0);
                    at += r.len;
                }
                assert_eq!(at, offset + len, "runs cover the range exactly");
            }
            Err(_) => {}
        }
        let mut buf = vec![0u8; len as usize];
        if disk.read_at(offset, &mut buf).is_ok() {
            assert!(inside, "read past the end accepted: {offset}+{len} of {size}");
        }
    }
});
