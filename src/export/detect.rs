//! Is an input a whole-VM export? Decided from content, never from the name: an OVA is a
//! tar archive (`ustar` at byte 257, in the POSIX and GNU flavours alike), an OVF is an
//! XML document whose root is an OVF Envelope. Pipes (`-`, a FIFO, a socket) are read
//! front to back, so what they hold is decided from their first block, which is then
//! replayed to the reader.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Where the tar magic is, and what it starts with.
const TAR_MAGIC_AT: usize = 257;
const TAR_MAGIC: &[u8] = b"ustar";
/// How much of a file is looked at for an OVF Envelope.
const XML_SNIFF: usize = 64 << 10;

/// What kind of export a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportKind {
    /// A tar archive holding the package.
    Ova,
    /// An OVF descriptor with its files beside it.
    Ovf,
}

/// What a pipe was found to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// An OVA archive.
    Ova,
    /// A bare streamOptimized (or other KDMV sparse) VMDK.
    Vmdk,
}

/// A pipe being read: its kind, and a reader that gives its bytes from the first.
pub struct StreamInput {
    pub kind: StreamKind,
    pub reader: Box<dyn Read + Send>,
}

/// How an input is to be read.
pub enum Input {
    /// An `.ova` file or an `.ovf` descriptor, read in place.
    Package(ExportKind),
    /// A pipe.
    Stream(StreamInput),
}

/// Whether `path` names a pipe: `-` (standard input), a FIFO or a socket.
pub fn is_stream(path: &Path) -> bool {
    if path.as_os_str() == "-" {
        return true;
    }
    std::fs::metadata(path).is_ok_and(|m| {
        let t = m.file_type();
        t.is_fifo() || t.is_socket()
    })
}

/// Decides how `path` is read: None when it is not an export (nor a pipe), so that the
/// caller opens it as a disk image. A pipe is opened and sniffed here; what it carries
/// must be an OVA or a VMDK stream.
pub fn sniff(path: &Path) -> Result<Option<Input>> {
    if is_stream(path) {
        return open_stream(path).map(|s| Some(Input::Stream(s)));
    }
    let Ok(mut file) = File::open(path) else {
        return Ok(None); // The image reader says what is wrong with it.
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut head = vec![0u8; XML_SNIFF];
    let n = read_up_to(&mut file, &mut head).map_err(|e| Error::input_io(path, "the file", e))?;
    Ok(kind_of(&head[..n]).map(Input::Package))
}

/// The export kind `head` (the first bytes of a file) shows, if any.
pub fn kind_of(head: &[u8]) -> Option<ExportKind> {
    if is_tar(head) {
        return Some(ExportKind::Ova);
    }
    is_ovf(head).then_some(ExportKind::Ovf)
}

fn is_tar(head: &[u8]) -> bool {
    head.get(TAR_MAGIC_AT..TAR_MAGIC_AT + TAR_MAGIC.len()) == Some(TAR_MAGIC)
}

/// XML (after a byte-order mark and white space, a `<`) naming the OVF envelope
/// namespace and an `Envelope` element: the descriptor itself is parsed later.
fn is_ovf(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Some(first) = text.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if text[first] != b'<' {
        return false;
    }
    let contains = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    contains(b"Envelope") && contains(b"http://schemas.dmtf.org/ovf/envelope/")
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Opens the pipe and looks at its first 512 bytes.
fn open_stream(path: &Path) -> Result<StreamInput> {
    let mut reader: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        widen_pipe(0);
        Box::new(io::stdin())
    } else {
        // A FIFO: opening blocks until a writer comes, as for any reader of a pipe.
        let file = File::open(path).map_err(|e| Error::input_io(path, "the pipe", e))?;
        widen_pipe(std::os::fd::AsRawFd::as_raw_fd(&file));
        Box::new(file)
    };
    let mut head = vec![0u8; 512];
    let n = read_up_to(&mut reader, &mut head).map_err(|e| Error::input_io(path, "the pipe", e))?;
    head.truncate(n);
    let kind = if is_tar(&head) {
        StreamKind::Ova
    } else if head.starts_with(crate::vmdk::header::MAGIC) {
        StreamKind::Vmdk
    } else {
        return Err(Error::unsupported(
            path,
            "a pipe is read front to back, so it must carry an OVA (a tar archive) or a streamOptimized VMDK; this one starts with neither (save other images to a file first)",
        ));
    };
    Ok(StreamInput {
        kind,
        reader: Box::new(io::Cursor::new(head).chain(reader)),
    })
}

/// Asks for a 1 MiB pipe buffer (the default is 64 KiB): fewer wake-ups of reader and
/// writer per MiB. A hint only: refused on other descriptors and above the system's limit.
fn widen_pipe(fd: i32) {
    // SAFETY: fcntl on a descriptor this process holds; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_content() {
        let mut tar = vec![0u8; 1024];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(kind_of(&tar), Some(ExportKind::Ova));
        tar[257..265].copy_from_slice(b"ustar  \0");
        assert_eq!(kind_of(&tar), Some(ExportKind::Ova));
        let ovf = b"\xEF\xBB\xBF\n <?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\">";
        assert_eq!(kind_of(ovf), Some(ExportKind::Ovf));
        assert_eq!(kind_of(b"<?xml version=\"1.0\"?><html/>"), None);
        assert_eq!(kind_of(b"# Disk DescriptorFile\nversion=1\n"), None);
        assert_eq!(kind_of(b"KDMV"), None);
        assert_eq!(kind_of(b""), None);
    }
}
