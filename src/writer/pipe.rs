//! The write helper (I16): full buffers are written on a helper thread
//! while the writer encodes the next one.

use std::sync::{Arc, mpsc};

use crate::io::{SharedBuf, StorageFile};

/// A full buffer handed to the write helper: its bytes `range` go to the
/// file at `offset`. Frozen (I18), so readers read it meanwhile.
pub(super) struct Job {
    pub file: Arc<dyn StorageFile>,
    pub buf: Arc<SharedBuf>,
    pub range: std::ops::Range<usize>,
    pub offset: u64,
}

/// Writes full buffers on a helper thread while the writer encodes the next
/// one, so encoding and I/O overlap (DESIGN I16). At most one write is in
/// flight. Every other storage operation of the WAL waits for it first, so
/// the device sees the same operations in the same order as with a
/// synchronous write (the crash and fault sweeps number them identically).
/// A failed write is sticky: every later wait reports it, so no sync can
/// succeed after it. Dropping the pipe waits for the write in flight, so
/// nothing is written after the WAL (and its directory lock) is gone.
#[derive(Default)]
pub(super) struct WritePipe {
    jobs: Option<mpsc::Sender<Job>>,
    done: Option<mpsc::Receiver<std::io::Result<()>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: bool,
    /// The first failure, reported by every later `settle`.
    pub(super) failed: Option<(std::io::ErrorKind, String)>,
}

impl WritePipe {
    pub(super) fn submit(&mut self, job: Job) -> std::io::Result<()> {
        debug_assert!(!self.in_flight);
        if self.jobs.is_none() {
            let (jobs, rx) = mpsc::channel::<Job>();
            let (tx, done) = mpsc::channel();
            let thread = std::thread::Builder::new().name("directwal-write".into()).spawn(move || {
                for job in rx {
                    let r = job.file.write_all_at(&job.buf.frozen(job.range.end)[job.range.start..], job.offset);
                    // Let go of the buffer before reporting, so the writer
                    // may reuse it once it has the report.
                    drop(job);
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            })?;
            (self.jobs, self.done, self.thread) = (Some(jobs), Some(done), Some(thread));
        }
        let jobs = self.jobs.as_ref().expect("started");
        jobs.send(job).map_err(|_| std::io::Error::other("the write helper is gone"))?;
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the write in flight, if any; reports the first failure of
    /// any write so far.
    pub(super) fn settle(&mut self) -> std::io::Result<()> {
        if self.in_flight {
            self.in_flight = false;
            match self.done.as_ref().expect("started").recv() {
                Ok(r) => {
                    if let Err(e) = r {
                        self.failed.get_or_insert((e.kind(), e.to_string()));
                    }
                }
                Err(_) => {
                    self.failed.get_or_insert((std::io::ErrorKind::Other, "the write helper is gone".into()));
                }
            }
        }
        match &self.failed {
            Some((kind, msg)) => Err(std::io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for WritePipe {
    fn drop(&mut self) {
        let _ = self.settle();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
