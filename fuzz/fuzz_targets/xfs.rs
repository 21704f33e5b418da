//! Fuzz target: any bytes as an XFS file system through vdconv::guest::fs::xfs::fuzz_xfs
//! (open, log replay, and a bounded walk reading every file and link), which must never
//! panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::guest::fs::xfs::fuzz_xfs(data));
