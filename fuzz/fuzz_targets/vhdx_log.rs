//! Fuzz target: any bytes through vdconv::vhdx::log::fuzz_vhdx_log, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::vhdx::log::fuzz_vhdx_log(data));
