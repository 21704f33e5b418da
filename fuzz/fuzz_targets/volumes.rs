//! Fuzz target: a whole disk in the paged encoding (fuzz/page_image.py) through
//! vdconv::guest::volume::fuzz_volumes_pages
//! (partition tables, LVM labels and metadata, content detection, and a walk of every
//! file system that opens), which must never panic.
//!
//! The one exception, as in the binary: a file system crate's panic on its own reader
//! thread (guest::fs::confined), which ends that thread and becomes an error. libFuzzer's
//! hook would abort on it; it is passed over here, and every other panic still aborts.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let contained = std::thread::current()
                .name()
                .is_some_and(vdconv::guest::fs::confined::is_confined_thread);
            if !contained {
                abort(info);
            }
        }));
    },
    |data: &[u8]| vdconv::guest::volume::fuzz_volumes_pages(data)
);
