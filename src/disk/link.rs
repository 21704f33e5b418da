//! What a layer of a snapshot chain says about its parent: where to look for it, and the
//! identity the parent must carry. A VMDK delta records a parentFileNameHint and its
//! parent's CID; a differencing VHD its parent's unique id and paths in parent locators; a
//! differencing VHDX its parent's DataWriteGuid and paths in a parent locator item.
//!
//! The readers fill these in; the chain assembly (`crate::chain`) finds, opens and checks
//! the parent. Nothing here opens a file.

use std::fmt;

use crate::rules::Rule;

/// One place a layer names its parent, as the layer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentHint {
    /// The path as written (a Windows path, a relative name, a VMFS path).
    pub path: String,
    /// Where it was read from, for messages: `parentFileNameHint`, `W2ru`, `relative_path`.
    pub key: &'static str,
}

/// An identity one link of a chain records for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkId {
    /// A VMDK content ID (the descriptor's `CID`).
    VmdkCid(u32),
    /// A VHD footer's unique id (16 bytes as stored).
    VhdUniqueId([u8; 16]),
    /// A VHDX header's DataWriteGuid (16 bytes as stored, mixed-endian).
    VhdxDataWrite([u8; 16]),
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkId::VmdkCid(cid) => write!(f, "CID {cid:08x}"),
            LinkId::VhdUniqueId(id) => write!(f, "unique id {}", uuid::Uuid::from_bytes(*id)),
            LinkId::VhdxDataWrite(id) => {
                write!(f, "DataWriteGuid {{{}}}", uuid::Uuid::from_bytes_le(*id))
            }
        }
    }
}

impl LinkId {
    /// The identity as `info` shows it: the CID's 8 hex digits, or the GUID.
    pub fn value(&self) -> String {
        match self {
            LinkId::VmdkCid(cid) => format!("{cid:08x}"),
            LinkId::VhdUniqueId(id) => uuid::Uuid::from_bytes(*id).to_string(),
            LinkId::VhdxDataWrite(id) => uuid::Uuid::from_bytes_le(*id).to_string(),
        }
    }
}

/// How a layer names its parent.
#[derive(Debug, Clone)]
pub struct ParentLink {
    /// The places to look, most trusted first (a VHDX relative path before its absolute
    /// one, as MS-VHDX orders them).
    pub hints: Vec<ParentHint>,
    /// The parent's identity as this layer recorded it: the parent must carry one of
    /// these. Empty when the layer recorded none.
    pub expected: Vec<LinkId>,
    /// What the layer calls that identity, for messages (`parentCID`, `parent_linkage`).
    pub expected_key: &'static str,
    /// The format the parent must have: `vmdk`, `vhd` or `vhdx`.
    pub format: &'static str,
    /// Whether the parent must have this layer's virtual size (VMware never resizes a disk
    /// with snapshots; VHD and VHDX children may be larger than their parents, whose
    /// missing tail then reads as zeros).
    pub same_size: bool,
    /// The rule a broken link breaks, for `check`.
    pub rule: &'static Rule,
}
