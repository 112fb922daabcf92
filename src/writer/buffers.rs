//! The writer's write buffers (I18): the one being filled and the retired
//! ones readers or the write helper may still hold.

use crate::io::WriteBuf;

/// Retired write buffers kept for reuse: one may be in the helper's write
/// and two in the readers' tail (`TAIL_CACHE_BYTES` of 4 MiB buffers).
const RETIRED_BUFFERS: usize = 4;

/// The writer's buffers (I18): the one being filled, and retired ones,
/// reused once no one else (the write helper, readers) holds them.
pub(crate) struct Buffers {
    pub cur: WriteBuf,
    retired: Vec<WriteBuf>,
}

impl Buffers {
    pub fn new(len: usize, align: usize) -> Self {
        Buffers { cur: WriteBuf::new(len, align), retired: Vec::new() }
    }

    /// Capacity of each buffer.
    pub fn len(&self) -> usize {
        self.cur.len()
    }

    /// Makes the current buffer one that no one else holds (all writable).
    pub(super) fn exclusive(&mut self) {
        if !self.cur.reclaim() {
            self.rotate();
        }
    }

    /// Retires the current buffer and continues in one that no one else
    /// holds: a retired one, or (while readers or the helper hold them all)
    /// a new one.
    pub(super) fn rotate(&mut self) {
        let next = match self.retired.iter_mut().position(|b| b.reclaim()) {
            Some(i) => self.retired.remove(i),
            None => WriteBuf::new(self.cur.len(), self.cur.align()),
        };
        self.retired.push(std::mem::replace(&mut self.cur, next));
        if self.retired.len() > RETIRED_BUFFERS {
            self.retired.remove(0);
        }
    }
}
