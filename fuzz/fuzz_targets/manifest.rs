//! Fuzz target: any bytes through vdconv::ova::fuzz_manifest, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::ova::fuzz_manifest(data));
