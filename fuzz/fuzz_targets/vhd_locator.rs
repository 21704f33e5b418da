//! Fuzz target: any bytes as a differencing VHD's dynamic header (its parent locator
//! entries and name) followed by the data they point at.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::vhd::locator::fuzz_vhd_locators(data));
