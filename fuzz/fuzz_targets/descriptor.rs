//! Fuzz target: the VMDK text descriptor parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vdconv::vmdk::descriptor::Descriptor::parse_bytes(data);
});
