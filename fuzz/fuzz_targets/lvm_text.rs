//! Fuzz target: any bytes through vdconv::guest::volume::lvm::text::fuzz_lvm_text, the
//! LVM2 metadata text parser, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::guest::volume::lvm::text::fuzz_lvm_text(data));
