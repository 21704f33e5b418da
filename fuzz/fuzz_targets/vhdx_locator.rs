//! Fuzz target: any bytes as a VHDX parent locator metadata item.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::vhdx::locator::fuzz_vhdx_locator(data));
