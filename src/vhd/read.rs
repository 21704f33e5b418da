//! Reading fixed, dynamic and differencing VHD files. A differencing disk is a layer of a
//! chain: what its blocks and sector bitmaps do not hold maps as `Parent`, and its parent
//! locators and parent unique id say where and which its parent is.

use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use crate::cancel::Cancel;
use crate::disk::info::{ExtentInfo, Geometry, ImageInfo, VhdDetails};
use crate::disk::table::{Entry, Table};
use crate::disk::{Disk, InputFile, LinkId, ParentLink, Run, RunKind, push_run};
use crate::error::{Error, Result};
use crate::rules;
use crate::vhd::dynamic::{COOKIE as HEADER_COOKIE, DynamicHeader, UNALLOCATED, bitmap_bytes};
use crate::vhd::footer::{COOKIE, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, Footer};
use crate::vhd::locator;

/// Largest dynamic block accepted (the specification's default is 2 MiB).
pub const MAX_BLOCK_SIZE: u64 = 256 << 20;
/// Most BAT entries read: 16M blocks (32 TiB in 2 MiB blocks, Azure's limit). Bounds the
/// time a walk of the map takes, whatever the header claims.
pub const MAX_BAT_ENTRIES: u64 = 1 << 24;

enum Layout {
    Fixed,
    Dynamic(Dynamic),
}

/// A dynamic disk's block table and where its blocks may lie.
struct Dynamic {
    block_size: u64,
    bat: Table,
    /// Blocks start at or after this: the end of the header and BAT.
    data_start: u64,
    bitmap_len: u64,
    /// The most recently read sector bitmap and its block.
    bitmap: Option<(u64, Vec<u8>)>,
    /// A differencing disk: sectors and blocks it does not hold are its parent's.
    differencing: bool,
}

impl Dynamic {
    /// File offset of block `index`'s bitmap, or None when unallocated. The block must lie
    /// after the metadata and inside the file (the last one may be partial).
    fn block(&mut self, file: &InputFile, disk_size: u64, index: u64) -> Result<Option<u64>> {
        let entry = self.bat.get(file, index)?;
        if entry == u64::from(UNALLOCATED) {
            return Ok(None);
        }
        let at = entry * 512;
        let used = (disk_size - index * self.block_size).min(self.block_size);
        let end = at + self.bitmap_len + used;
        if at < self.data_start || end > file.len() {
            return Err(Error::broken(
                file.path(),
                &rules::VHD_BLOCK_BEYOND_EOF,
                "VHD BAT entry",
                self.bat.entry_offset(index),
                format!(
                    "block {index} at {at}..{end} lies on the header or BAT, or past the end of the file ({} bytes)",
                    file.len()
                ),
            ));
        }
        Ok(Some(at))
    }

    /// The sector bitmap of block `index`, stored at `at`.
    fn bitmap(&mut self, file: &InputFile, index: u64, at: u64) -> Result<&[u8]> {
        if self.bitmap.as_ref().is_none_or(|(i, _)| *i != index) {
            let mut bytes = vec![0u8; self.bitmap_len as usize];
            file.read_exact_at(&mut bytes, at, "VHD sector bitmap")?;
            self.bitmap = Some((index, bytes));
        }
        Ok(&self.bitmap.as_ref().expect("just read").1)
    }

    /// Appends the runs of `[within, within + n)` of block `index` (at `base` on the
    /// disk): stored sectors as Data, the others as the parent's (`absent`). Bits are
    /// MSB-first: bit 7 of byte 0 is the block's first sector.
    fn map_bitmap(
        &mut self,
        file: &InputFile,
        index: u64,
        at: u64,
        (base, within, n): (u64, u64, u64),
        out: &mut Vec<Run>,
    ) -> Result<()> {
        let map = self.bitmap(file, index, at)?;
        let end = within + n;
        let mut pos = within;
        while pos < end {
            let sector = pos / 512;
            let byte = map[(sector / 8) as usize];
            // Whole bytes at once where they agree.
            let (kind, upto) = if sector % 8 == 0 && (byte == 0 || byte == 0xFF) {
                let kind = if byte == 0 {
                    RunKind::Parent
                } else {
                    RunKind::Data
                };
                (kind, (sector + 8) * 512)
            } else if byte & (0x80 >> (sector % 8)) != 0 {
                (RunKind::Data, (sector + 1) * 512)
            } else {
                (RunKind::Parent, (sector + 1) * 512)
            };
            let upto = upto.min(end);
            push_run(out, base + pos, upto - pos, kind);
            pos = upto;
        }
        Ok(())
    }

    /// Reads `buf` from inside one block, honouring the sector bitmap.
    fn read_in_block(
        &mut self,
        file: &InputFile,
        disk_size: u64,
        index: u64,
        within: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let Some(at) = self.block(file, disk_size, index)? else {
            buf.fill(0);
            return Ok(());
        };
        file.read_exact_at(buf, at + self.bitmap_len + within, "VHD block")?;
        let map = self.bitmap(file, index, at)?;
        // Sectors whose bit is clear are not in use and read as zeros (in a differencing
        // disk: as the parent's, which the chain fills in).
        let first = (within / 512) as usize;
        for (i, sector) in buf.chunks_mut(512).enumerate() {
            let s = first + i;
            if map[s / 8] & (0x80 >> (s % 8)) == 0 {
                sector.fill(0);
            }
        }
        Ok(())
    }
}

pub struct VhdDisk {
    file: InputFile,
    footer: Footer,
    size: u64,
    layout: Layout,
    /// Where the parent is, for a differencing disk.
    parent: Option<ParentLink>,
    warnings: Vec<String>,
}

/// Reads the 512 bytes at `offset` as a footer, unchecked (`check` judges them itself).
pub fn read_footer(file: &InputFile, offset: u64) -> Result<Footer> {
    let mut bytes = [0u8; 512];
    file.read_exact_at(&mut bytes, offset, "VHD footer")?;
    Ok(Footer::read_from_bytes(&bytes).expect("512 bytes"))
}

/// Reads a footer, checking cookie and checksum.
fn checked_footer(file: &InputFile, offset: u64) -> Result<Footer> {
    let footer = read_footer(file, offset)?;
    if &footer.cookie != COOKIE {
        return Err(Error::broken(
            file.path(),
            &rules::VHD_FOOTER_COOKIE,
            "VHD footer",
            offset,
            "cookie is not 'conectix'",
        ));
    }
    if footer.expected_checksum() != footer.checksum.get() {
        return Err(Error::broken(
            file.path(),
            &rules::VHD_FOOTER_CHECKSUM,
            "VHD footer",
            offset,
            format!(
                "checksum {:#010x} does not match the contents ({:#010x})",
                footer.checksum.get(),
                footer.expected_checksum()
            ),
        ));
    }
    Ok(footer)
}

impl VhdDisk {
    pub fn open(file: InputFile) -> Result<Self> {
        let mut warnings = Vec::new();
        if file.len() < 512 {
            return Err(Error::truncated(
                file.path(),
                "VHD footer",
                0,
                "file is shorter than a footer",
            ));
        }
        let end = file.len() - 512;
        let footer = match checked_footer(&file, end) {
            Ok(f) => f,
            Err(e) => {
                // A dynamic disk keeps a copy at offset 0: use it, saying so.
                let copy = checked_footer(&file, 0).map_err(|_| e)?;
                warnings.push(
                    "footer at end of file is damaged; using the copy at offset 0".to_string(),
                );
                copy
            }
        };
        let size = footer.current_size.get();
        let mut parent = None;
        let layout = match footer.disk_type.get() {
            DISK_FIXED => {
                if size > end {
                    // Said without adding to `size`, which the file controls.
                    return Err(Error::truncated(
                        file.path(),
                        "VHD footer",
                        end,
                        format!(
                            "fixed disk of {size} bytes needs a file of its size plus a 512-byte footer; the file is {} bytes",
                            file.len()
                        ),
                    ));
                }
                if size % 512 != 0 {
                    return Err(Error::broken(
                        file.path(),
                        &rules::VHD_SIZE_UNALIGNED,
                        "VHD footer",
                        end + 48,
                        format!("current size {size} is not a multiple of 512"),
                    ));
                }
                Layout::Fixed
            }
            DISK_DYNAMIC => open_dynamic(&file, &footer, size, false)?,
            DISK_DIFFERENCING => {
                let layout = open_dynamic(&file, &footer, size, true)?;
                parent = Some(parent_link(&file, &footer)?);
                layout
            }
            other => {
                return Err(Error::broken(
                    file.path(),
                    &rules::VHD_DISK_TYPE,
                    "VHD footer",
                    end + 60,
                    format!("disk type {other} is not 2 (fixed), 3 (dynamic) or 4 (differencing)"),
                ));
            }
        };
        Ok(VhdDisk {
            file,
            footer,
            size,
            layout,
            parent,
            warnings,
        })
    }
}

fn read_header(file: &InputFile, footer: &Footer) -> Result<(u64, DynamicHeader)> {
    let at = footer.data_offset.get();
    let mut bytes = [0u8; 1024];
    file.read_exact_at(&mut bytes, at, "VHD dynamic header")?;
    let header = DynamicHeader::read_from_bytes(&bytes).expect("1024 bytes");
    if &header.cookie != HEADER_COOKIE {
        return Err(Error::broken(
            file.path(),
            &rules::VHD_HEADER_COOKIE,
            "VHD dynamic header",
            at,
            "cookie is not 'cxsparse'",
        ));
    }
    if header.expected_checksum() != header.checksum.get() {
        return Err(Error::broken(
            file.path(),
            &rules::VHD_HEADER_CHECKSUM,
            "VHD dynamic header",
            at,
            "checksum does not match the contents",
        ));
    }
    Ok((at, header))
}

fn open_dynamic(
    file: &InputFile,
    footer: &Footer,
    size: u64,
    differencing: bool,
) -> Result<Layout> {
    let (at, header) = read_header(file, footer)?;
    let block_size = u64::from(header.block_size.get());
    if !block_size.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(Error::broken(
            file.path(),
            &rules::VHD_BLOCK_SIZE,
            "VHD dynamic header",
            at + 32,
            format!("block size {block_size} is not a power of two up to 256 MiB"),
        ));
    }
    let needed = size.div_ceil(block_size);
    let entries = u64::from(header.max_table_entries.get());
    if entries < needed {
        return Err(Error::broken(
            file.path(),
            &rules::VHD_BAT_TOO_SMALL,
            "VHD dynamic header",
            at + 28,
            format!(
                "{entries} BAT entries cannot cover {size} bytes in {block_size}-byte blocks ({needed} needed)"
            ),
        ));
    }
    if needed > MAX_BAT_ENTRIES {
        return Err(Error::unsupported(
            file.path(),
            format!(
                "VHD dynamic header at offset {at}: {needed} blocks; vdconv reads at most {MAX_BAT_ENTRIES}"
            ),
        ));
    }
    // Only the entries the disk uses are read, a window at a time; the file must hold them.
    let table = header.table_offset.get();
    let bat = Table::new(file, table, needed, Entry::U32Be, "VHD BAT")?;
    Ok(Layout::Dynamic(Dynamic {
        block_size,
        bat,
        data_start: (at + 1024).max(table + needed * 4),
        bitmap_len: bitmap_bytes(block_size),
        bitmap: None,
        differencing,
    }))
}

/// How a differencing disk names its parent: the paths of its locators and header, and
/// the parent's unique id.
fn parent_link(file: &InputFile, footer: &Footer) -> Result<ParentLink> {
    let (at, header) = read_header(file, footer)?;
    let locators = locator::read_locators(file, &header.parent_locators, at + 576)?;
    let name = locator::parent_unicode_name(&header.parent_unicode_name);
    Ok(ParentLink {
        hints: locator::hints(&locators, &name),
        expected: vec![LinkId::VhdUniqueId(header.parent_unique_id)],
        expected_key: "parent unique id",
        format: "vhd",
        same_size: false,
        rule: &rules::VHD_PARENT_LOCATOR,
    })
}

impl Disk for VhdDisk {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        let d = match &mut self.layout {
            Layout::Fixed => {
                push_run(out, offset, len, RunKind::Data);
                return Ok(());
            }
            Layout::Dynamic(d) => d,
        };
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let index = pos / d.block_size;
            let n = ((index + 1) * d.block_size).min(end) - pos;
            match d.block(&self.file, self.size, index)? {
                Some(at) if d.differencing => {
                    let within = pos - index * d.block_size;
                    d.map_bitmap(&self.file, index, at, (pos - within, within, n), out)?
                }
                Some(_) => push_run(out, pos, n, RunKind::Data),
                None if d.differencing => push_run(out, pos, n, RunKind::Parent),
                None => push_run(out, pos, n, RunKind::Zero),
            }
            pos += n;
        }
        Ok(())
    }

    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let d = match &mut self.layout {
            Layout::Fixed => return self.file.read_exact_at(buf, offset, "VHD data"),
            Layout::Dynamic(d) => d,
        };
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / d.block_size;
            let within = pos % d.block_size;
            let n = ((d.block_size - within) as usize).min(buf.len() - done);
            d.read_in_block(
                &self.file,
                self.size,
                index,
                within,
                &mut buf[done..done + n],
            )?;
            done += n;
        }
        Ok(())
    }

    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        let allocated = crate::disk::allocated_bytes(self, cancel)?;
        let f = &self.footer;
        let chs = f.chs();
        let (layout, block_size) = match &self.layout {
            Layout::Fixed => ("fixed", None),
            Layout::Dynamic(d) if d.differencing => ("differencing", Some(d.block_size)),
            Layout::Dynamic(d) => ("dynamic", Some(d.block_size)),
        };
        let version = f.creator_version.get();
        Ok(ImageInfo {
            file: self.file.path().display().to_string(),
            format: "vhd",
            layout: layout.to_string(),
            virtual_size: self.size,
            allocated_bytes: allocated,
            extents: vec![ExtentInfo {
                access: "RW".into(),
                kind: layout.to_uppercase(),
                start: 0,
                size: self.size,
                file: Some(self.file.path().display().to_string()),
                file_offset: 0,
            }],
            vmdk: None,
            vhd: Some(VhdDetails {
                creator_app: String::from_utf8_lossy(&f.creator_app).into_owned(),
                creator_version: format!("{}.{}", version >> 16, version & 0xffff),
                creator_host_os: String::from_utf8_lossy(&f.creator_host_os).into_owned(),
                geometry: Geometry {
                    cylinders: u64::from(chs.cylinders),
                    heads: u64::from(chs.heads),
                    sectors: u64::from(chs.sectors_per_track),
                },
                unique_id: uuid::Uuid::from_bytes(f.unique_id).to_string(),
                block_size,
            }),
            vhdx: None,
            warnings: self.warnings.clone(),
        })
    }

    fn file_range(&self, offset: u64, _len: u64) -> Option<(std::sync::Arc<std::fs::File>, u64)> {
        matches!(self.layout, Layout::Fixed).then(|| (self.file.shared(), offset))
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.file.path().to_path_buf()]
    }

    fn parent(&self) -> Option<&ParentLink> {
        self.parent.as_ref()
    }

    fn link_id(&self) -> Option<LinkId> {
        Some(LinkId::VhdUniqueId(self.footer.unique_id))
    }
}
