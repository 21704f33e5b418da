//! A snapshot chain read as one disk: layers stacked top first, each a `Disk` that maps
//! `RunKind::Parent` for what it does not hold. A map or a read of the chain asks the top
//! layer and resolves its `Parent` runs in the layer below, and so on; what the bottom
//! layer (or a layer smaller than the one above it) leaves unanswered reads as zeros.
//!
//! The chain knows nothing of formats: VMDK deltas, differencing VHD and VHDX all stack
//! the same way. Finding and checking the layers is `crate::chain`'s job.

use std::path::{Path, PathBuf};

use super::{Disk, ImageInfo, Run, RunKind, push_run};
use crate::cancel::Cancel;
use crate::error::Result;

/// Most links a chain may have (VMware's own limit is 31 snapshots per tree; Workstation
/// allows more than 100 in a line). Bounds the recursion of a map or a read.
pub const MAX_LINKS: usize = 255;

pub struct ChainDisk {
    /// Top first. Every layer but the last may map `Parent`.
    layers: Vec<Box<dyn Disk>>,
    /// Anomalies of every layer and of the chain's assembly.
    warnings: Vec<String>,
    /// One run buffer per layer, reused by maps and reads.
    scratch: Vec<Vec<Run>>,
}

impl ChainDisk {
    /// Stacks `layers` (top first, at most MAX_LINKS, at least one). `warnings` are the
    /// assembly's own; each layer's are added.
    pub fn new(layers: Vec<Box<dyn Disk>>, mut warnings: Vec<String>) -> Self {
        assert!(
            !layers.is_empty() && layers.len() <= MAX_LINKS,
            "a chain has 1 to {MAX_LINKS} layers"
        );
        for layer in &layers {
            warnings.extend(layer.warnings().iter().cloned());
        }
        let scratch = vec![Vec::new(); layers.len()];
        ChainDisk {
            layers,
            warnings,
            scratch,
        }
    }

    /// The layers, top first.
    pub fn layers(&self) -> &[Box<dyn Disk>] {
        &self.layers
    }

    /// Appends the runs of `[offset, offset + len)` as the chain reads from `level` down
    /// (level 0 is the whole chain): `Parent` never appears.
    pub fn map_from(
        &mut self,
        level: usize,
        offset: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<()> {
        let Some(layer) = self.layers.get_mut(level) else {
            push_run(out, offset, len, RunKind::Zero);
            return Ok(());
        };
        let end = offset + len;
        let inside_end = end.min(layer.virtual_size());
        if offset < inside_end {
            let mut runs = std::mem::take(&mut self.scratch[level]);
            runs.clear();
            let mapped = self.layers[level].map(offset, inside_end - offset, &mut runs);
            let resolved = mapped.and_then(|()| {
                for r in &runs {
                    match r.kind {
                        RunKind::Parent => self.map_from(level + 1, r.offset, r.len, out)?,
                        kind => push_run(out, r.offset, r.len, kind),
                    }
                }
                Ok(())
            });
            self.scratch[level] = runs;
            resolved?;
        }
        // Past a smaller layer's end: nothing below answers either.
        push_run(
            out,
            inside_end.max(offset),
            end - inside_end.max(offset),
            RunKind::Zero,
        );
        Ok(())
    }

    /// Fills `buf` with the chain's bytes at `offset` as read from `level` down.
    pub fn read_from(&mut self, level: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(layer) = self.layers.get_mut(level) else {
            buf.fill(0);
            return Ok(());
        };
        let end = offset + buf.len() as u64;
        let inside_end = end.min(layer.virtual_size()).max(offset);
        let inside = (inside_end - offset) as usize;
        buf[inside..].fill(0);
        if inside == 0 {
            return Ok(());
        }
        if self.layers.len() == level + 1 {
            // The bottom has no parent to resolve: read it as it is.
            return self.layers[level].read_at(offset, &mut buf[..inside]);
        }
        let mut runs = std::mem::take(&mut self.scratch[level]);
        runs.clear();
        let result = self.layers[level]
            .map(offset, inside as u64, &mut runs)
            .and_then(|()| {
                for r in &runs {
                    let from = (r.offset - offset) as usize;
                    let piece = &mut buf[from..from + r.len as usize];
                    match r.kind {
                        RunKind::Data => self.layers[level].read_at(r.offset, piece)?,
                        RunKind::Zero => piece.fill(0),
                        RunKind::Parent => self.read_from(level + 1, r.offset, piece)?,
                    }
                }
                Ok(())
            });
        self.scratch[level] = runs;
        result
    }
}

impl Disk for ChainDisk {
    fn virtual_size(&self) -> u64 {
        self.layers[0].virtual_size()
    }

    fn path(&self) -> &Path {
        self.layers[0].path()
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        self.map_from(0, offset, len, out)
    }

    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_from(0, offset, buf)
    }

    /// The top layer's description, with the chain's allocation and warnings: what the
    /// guest sees is the whole chain's.
    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        let mut info = self.layers[0].describe(cancel)?;
        info.allocated_bytes = super::allocated_bytes(self, cancel)?;
        info.warnings = self.warnings.clone();
        Ok(info)
    }

    fn adapter_type(&self) -> Option<String> {
        // Deltas usually repeat their base's disk database; the newest one that says wins.
        self.layers.iter().find_map(|l| l.adapter_type())
    }

    fn prefetch(&self, offset: u64, len: u64) {
        for layer in &self.layers {
            if offset < layer.virtual_size() {
                layer.prefetch(offset, len.min(layer.virtual_size() - offset));
            }
        }
    }

    fn in_place_file(&self) -> std::result::Result<PathBuf, String> {
        Err(format!(
            "{} is a snapshot chain of {} links; only a single flat VMDK converts in place",
            self.path().display(),
            self.layers.len()
        ))
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn files(&self) -> Vec<PathBuf> {
        self.layers.iter().flat_map(|l| l.files()).collect()
    }

    fn layers_mut(&mut self) -> Option<&mut [Box<dyn Disk>]> {
        Some(&mut self.layers)
    }

    /// Every link's content id, top first: the chain reads otherwise when any changes.
    fn content_id(&self) -> Option<String> {
        let ids: Option<Vec<String>> = self.layers.iter().map(|l| l.content_id()).collect();
        ids.map(|ids| ids.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::ImageInfo;

    /// A layer in memory: `None` bytes are `Parent`, `Some(0)` zeros, others data.
    struct Mem {
        bytes: Vec<Option<u8>>,
        warnings: Vec<String>,
    }

    impl Mem {
        fn boxed(spec: &str) -> Box<dyn Disk> {
            let bytes = spec
                .bytes()
                .map(|b| match b {
                    b'.' => None,
                    b'0' => Some(0),
                    b => Some(b),
                })
                .collect();
            Box::new(Mem {
                bytes,
                warnings: Vec::new(),
            })
        }
    }

    impl Disk for Mem {
        fn virtual_size(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn path(&self) -> &Path {
            Path::new("mem")
        }
        fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
            for i in offset..offset + len {
                let kind = match self.bytes[i as usize] {
                    None => RunKind::Parent,
                    Some(0) => RunKind::Zero,
                    Some(_) => RunKind::Data,
                };
                push_run(out, i, 1, kind);
            }
            Ok(())
        }
        fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.bytes[offset as usize + i].unwrap_or(0);
            }
            Ok(())
        }
        fn describe(&mut self, _: &Cancel) -> Result<ImageInfo> {
            unimplemented!()
        }
        fn warnings(&self) -> &[String] {
            &self.warnings
        }
        fn files(&self) -> Vec<PathBuf> {
            Vec::new()
        }
    }

    fn read_all(chain: &mut ChainDisk) -> String {
        let mut buf = vec![0u8; chain.virtual_size() as usize];
        (chain as &mut dyn Disk).read_at(0, &mut buf).unwrap();
        buf.iter()
            .map(|&b| if b == 0 { '0' } else { b as char })
            .collect()
    }

    #[test]
    fn parent_runs_resolve_layer_by_layer() {
        // Top, middle, a base shorter than the rest (its missing tail reads as zeros).
        let mut chain = ChainDisk::new(
            vec![
                Mem::boxed("a..0..."),
                Mem::boxed(".b.0c.."),
                Mem::boxed("xyzw"),
            ],
            Vec::new(),
        );
        assert_eq!(read_all(&mut chain), "abz0c00");
        let mut runs = Vec::new();
        (&mut chain as &mut dyn Disk).map(0, 7, &mut runs).unwrap();
        let kinds: Vec<_> = runs.iter().map(|r| (r.offset, r.len, r.kind)).collect();
        assert_eq!(
            kinds,
            [
                (0, 3, RunKind::Data),
                (3, 1, RunKind::Zero),
                (4, 1, RunKind::Data),
                (5, 2, RunKind::Zero)
            ]
        );
        // Read from the middle down, as a writer of the middle layer's child sees it.
        let mut buf = [0u8; 7];
        chain.read_from(1, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"xbz\0c\0\0");
        // Unaligned reads inside the chain.
        let mut buf = [0u8; 3];
        (&mut chain as &mut dyn Disk).read_at(1, &mut buf).unwrap();
        assert_eq!(&buf, b"bz\0");
    }
}
