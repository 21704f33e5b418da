//! A file system whose reader is not `Send`/`Sync`, served by one thread that owns it.
//!
//! `ext4_view::Ext4` keeps its state behind `Rc`; `fatfs::FileSystem` holds non-`Sync`
//! trait objects. `GuestFs` must be `Send + Sync`. Rather than assert that with `unsafe`,
//! the reader lives on its own thread and [`Confined`] sends it requests over a channel.
//! A panic inside a crate on damaged data ends that thread only: callers get an error.

use std::sync::mpsc::{self, Receiver, Sender};

use super::{DirEntry, GuestFs, Metadata};
use crate::guest::error::{GuestError, GuestResult};

/// Threads that own a crate's reader are named with this prefix. A panic on one is
/// contained (the caller gets an error), so the binary does not print it.
pub const THREAD_PREFIX: &str = "guest ";

/// Whether a thread named `name` owns a confined reader.
pub fn is_confined_thread(name: &str) -> bool {
    name.starts_with(THREAD_PREFIX)
}

/// The reading half, on the thread that owns it: `GuestFs` without `Send + Sync`.
pub trait LocalFs {
    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata>;
    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>>;
    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>>;
    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>>;
}

/// What a file system says about itself, fixed at open.
pub struct Identity {
    pub kind: &'static str,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

enum Request {
    Metadata(Vec<u8>, Sender<GuestResult<Metadata>>),
    ReadDir(Vec<u8>, Sender<GuestResult<Vec<DirEntry>>>),
    ReadFile(Vec<u8>, u64, Sender<GuestResult<Vec<u8>>>),
    ReadLink(Vec<u8>, Sender<GuestResult<Vec<u8>>>),
}

fn serve(fs: &dyn LocalFs, requests: Receiver<Request>) {
    for r in requests {
        // A caller that went away does not want its answer: ignore send failures.
        match r {
            Request::Metadata(p, reply) => drop(reply.send(fs.metadata(&p))),
            Request::ReadDir(p, reply) => drop(reply.send(fs.read_dir(&p))),
            Request::ReadFile(p, limit, reply) => drop(reply.send(fs.read_file(&p, limit))),
            Request::ReadLink(p, reply) => drop(reply.send(fs.read_link(&p))),
        }
    }
}

/// The `Send + Sync` handle. The thread ends when the handle is dropped.
pub struct Confined {
    requests: Sender<Request>,
    identity: Identity,
    /// Names the file system in the error a stopped reader gives.
    structure: &'static str,
}

impl Confined {
    /// Runs `open` on a new thread and, when it succeeds, serves the reader it made there.
    pub fn spawn<F>(structure: &'static str, open: F) -> GuestResult<Confined>
    where
        F: FnOnce() -> GuestResult<(Box<dyn LocalFs>, Identity)> + Send + 'static,
    {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (opened, on_open) = mpsc::channel::<GuestResult<Identity>>();
        std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}{structure}"))
            .spawn(move || match open() {
                Ok((fs, identity)) => {
                    let _ = opened.send(Ok(identity));
                    serve(&*fs, incoming);
                }
                Err(e) => drop(opened.send(Err(e))),
            })
            .map_err(|e| GuestError::Io {
                what: format!("a thread for the {structure} reader"),
                offset: 0,
                detail: e.to_string(),
            })?;
        let identity = on_open.recv().map_err(|_| stopped(structure))??;
        Ok(Confined {
            requests,
            identity,
            structure,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<GuestResult<T>>) -> Request) -> GuestResult<T> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| stopped(self.structure))?;
        answer.recv().map_err(|_| stopped(self.structure))?
    }
}

fn stopped(structure: &'static str) -> GuestError {
    GuestError::Corrupt {
        structure,
        offset: 0,
        detail: "the reader stopped on damaged data".into(),
    }
}

impl GuestFs for Confined {
    fn kind(&self) -> &'static str {
        self.identity.kind
    }

    fn uuid(&self) -> Option<String> {
        self.identity.uuid.clone()
    }

    fn label(&self) -> Option<String> {
        self.identity.label.clone()
    }

    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata> {
        self.ask(|r| Request::Metadata(path.to_vec(), r))
    }

    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>> {
        self.ask(|r| Request::ReadDir(path.to_vec(), r))
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        self.ask(|r| Request::ReadFile(path.to_vec(), limit, r))
    }

    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>> {
        self.ask(|r| Request::ReadLink(path.to_vec(), r))
    }
}
