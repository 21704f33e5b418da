//! Fuzz target: any bytes through vdconv::vmdk::sesparse::fuzz_sesparse, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::vmdk::sesparse::fuzz_sesparse(data));
