//! Fuzz target: any bytes as a whole disk through vdconv::guest::volume::fuzz_volumes
//! (partition tables, LVM labels and metadata, content detection, and a walk of every
//! file system that opens), which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdconv::guest::volume::fuzz_volumes(data));
