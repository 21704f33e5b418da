//! Fuzz target: any bytes through vdconv::ova::fuzz_tar, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::ova::fuzz_tar(data));
