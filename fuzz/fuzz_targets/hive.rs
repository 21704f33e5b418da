//! Fuzz target: any bytes through vdconv::guest::registry::fuzz_hive, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::guest::registry::fuzz_hive(data));
