//! Fuzz target: any bytes as a hosted sparse VMDK (KDMV) image file, seeded with sparse
//! images; other formats return at once (see image.rs).
#![no_main]

#[path = "image.rs"]
mod image;

libfuzzer_sys::fuzz_target!(|data: &[u8]| image::run(data, &[vdconv::Format::VmdkSparse]));
