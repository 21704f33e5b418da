//! Fuzz target: an XFS file system in the paged encoding (fuzz/page_image.py) through
//! vdconv::guest::fs::xfs::fuzz_xfs_pages
//! (open, log replay, and a bounded walk reading every file and link), which must never
//! panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::guest::fs::xfs::fuzz_xfs_pages(data));
