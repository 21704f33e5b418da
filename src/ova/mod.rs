//! Whole-VM exports: OVA files (the OVF package in one tar) and OVF folders. Parses
//! the package without unpacking it and says where each disk's bytes are, how they are
//! stored, how large the OVF says the disk is and which controller it hangs on; reading
//! the disks (streamOptimized VMDKs) is left to the VMDK reader.
//!
//! One job per module:
//! - `tar`: members of a tar archive, indexed from a file or read in turn from a pipe;
//! - `names`: member names and hrefs, normalised and confined;
//! - `ovf`: the descriptor (XML) as a model; `units`: its sizes with units;
//! - `manifest`: `.mf` digests, hashing while reading, verification;
//! - `gzip`: a bounded decoder for gzip-compressed disks;
//! - `package`: the model tying them (`Package::open_file`, `Package::open_dir`);
//! - `stream`: the same model from a pipe (`OvaStream`).

pub mod error;
pub mod gzip;
pub mod manifest;
pub mod names;
pub mod ovf;
pub mod package;
pub mod stream;
pub mod tar;
pub mod units;

use std::io::Read;
use std::path::Path;

pub use error::{Algorithm, OvaError, OvaResult, Place};
pub use manifest::{DigestSet, Digests, HashingReader, Manifest};
pub use ovf::{Compression, Envelope, Firmware};
pub use package::{
    Location, ManifestReport, OvaPackage, OvfPackage, Package, PackageDisk, PackageFile,
    PackageKind, Piece, PieceView,
};
pub use stream::{OvaStream, StreamEntry, StreamFile, StreamOutcome};

/// Fuzzing entry: indexes `bytes` as a tar archive, reads it as a stream, and as an OVA
/// from a pipe. Never panics; errors are the expected outcome for most inputs.
pub fn fuzz_tar(bytes: &[u8]) {
    let name = Path::new("fuzz.ova");
    let _ = tar::index_bytes(bytes, name);
    let mut stream = tar::TarStream::new(bytes, name);
    let mut sink = [0u8; 4096];
    while let Ok(Some(mut member)) = stream.next_member() {
        while matches!(member.read(&mut sink), Ok(n) if n > 0) {}
    }
    if let Ok(mut ova) = OvaStream::new(bytes, name) {
        while let Ok(Some(mut file)) = ova.next_file() {
            while matches!(file.read(&mut sink), Ok(n) if n > 0) {}
        }
        let _ = ova.finish();
    }
}

/// Fuzzing entry: parses `bytes` as an OVF descriptor and asks it what `info` would.
pub fn fuzz_ovf(bytes: &[u8]) {
    let place = Place::member(Path::new("fuzz.ova"), "fuzz.ovf");
    if let Ok(envelope) = ovf::parse(bytes, &place) {
        for disk in &envelope.disks {
            let _ = envelope.attachment(disk);
        }
        let _ = envelope.system.display_name();
    }
}

/// Fuzzing entry: parses `bytes` as a manifest and verifies a digest against it.
pub fn fuzz_manifest(bytes: &[u8]) {
    let place = Place::member(Path::new("fuzz.ova"), "fuzz.mf");
    if let Ok(m) = Manifest::parse(bytes, &place) {
        for e in &m.entries {
            let mut set = DigestSet::new(&m.algorithms_for(&e.name));
            set.update(bytes);
            let _ = m.verify(&e.name, &set.finish(), &place);
        }
    }
}
