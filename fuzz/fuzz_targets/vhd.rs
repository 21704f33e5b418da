//! Fuzz target: any bytes as a VHD image file, seeded with vhd images;
//! other formats return at once (see image.rs).
#![no_main]

#[path = "image.rs"]
mod image;

libfuzzer_sys::fuzz_target!(|data: &[u8]| image::run(data, &[vdconv::Format::Vhd]));
