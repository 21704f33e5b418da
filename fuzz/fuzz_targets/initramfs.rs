//! Fuzz target: any bytes through vdconv::guest::initramfs::fuzz_initramfs, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::guest::initramfs::fuzz_initramfs(data));
