//! Fuzz target: any bytes through the one-pass streamOptimized reader (pipes, OVAs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::vmdk::sequential::fuzz_sequential(data));
