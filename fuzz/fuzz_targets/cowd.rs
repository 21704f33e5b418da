//! Fuzz target: any bytes through vdconv::vmdk::cowd::fuzz_cowd, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::vmdk::cowd::fuzz_cowd(data));
