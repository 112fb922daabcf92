//! Random operation sequences against an in-memory model, with
//! shrinking. After every operation the WAL must agree with the model exactly:
//! next LSN, the durable records, and which segments exist with which LSNs.
//! Crashes are power losses on the simulated device.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::payload;
use directwal::SegmentedWal;
use directwal::layout::record_size;
use directwal::sim::SimStorage;
use proptest::prelude::*;

const TARGET: u64 = 2048;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Sync,
    Roll,
    Truncate(u64),
    Reopen,
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..700).prop_map(Op::Append),
        4 => Just(Op::Sync),
        1 => Just(Op::Roll),
        1 => any::<u64>().prop_map(Op::Truncate),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::Crash),
    ]
}

#[derive(Debug, Clone)]
struct Seg {
    first: u64,
    records: u64,
    data_bytes: u64,
}

/// The model: every appended payload, how many are durable, the segments.
#[derive(Debug)]
struct Model {
    payloads: Vec<Vec<u8>>, // payloads[lsn - 1]
    durable: u64,
    segs: Vec<Seg>, // the last one is active
}

impl Model {
    fn next_lsn(&self) -> u64 {
        self.payloads.len() as u64 + 1
    }
    fn active(&mut self) -> &mut Seg {
        self.segs.last_mut().unwrap()
    }
    fn seal_and_start(&mut self) {
        let next = self.next_lsn();
        self.segs.push(Seg { first: next, records: 0, data_bytes: 0 });
    }
    /// After open: the newest segment is sealed if it holds records, replaced if not.
    fn reopened(&mut self) {
        if self.active().records == 0 {
            self.segs.pop();
        }
        self.seal_and_start();
    }
}

fn open(sim: &SimStorage) -> SegmentedWal {
    let c = common::config(Path::new("/m")).segment(TARGET).buffer(4096).chunk(4096).build();
    SegmentedWal::open_with_storage(c, Arc::new(sim.clone())).expect("open")
}

fn agree(wal: &SegmentedWal, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(wal.next_lsn(), m.next_lsn());
    let listed = wal.list_segments().unwrap();
    let firsts: Vec<u64> = listed.iter().map(|s| s.first_lsn).collect();
    let expected: Vec<u64> = m.segs.iter().map(|s| s.first).collect();
    prop_assert_eq!(firsts, expected);
    let recs = wal.replay().unwrap();
    let oldest = m.segs[0].first;
    let durable: Vec<u64> = (oldest..=m.durable).collect();
    prop_assert_eq!(recs.iter().map(|r| r.header.lsn).collect::<Vec<_>>(), durable);
    for r in &recs {
        prop_assert_eq!(&r.payload, &m.payloads[r.header.lsn as usize - 1]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn wal_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut sim = SimStorage::new();
        let mut wal = open(&sim);
        let mut m = Model { payloads: Vec::new(), durable: 0, segs: vec![Seg { first: 1, records: 0, data_bytes: 0 }] };
        for op in ops {
            match op {
                Op::Append(len) => {
                    let size = record_size(len) as u64;
                    let a = m.active();
                    if a.records > 0 && a.data_bytes + size > TARGET {
                        // Roll: the old segment is synced and sealed.
                        m.durable = m.payloads.len() as u64;
                        m.seal_and_start();
                    }
                    let lsn = m.next_lsn();
                    prop_assert_eq!(wal.append(1, 0, 0, &payload(lsn, len)).unwrap(), lsn);
                    m.payloads.push(payload(lsn, len));
                    let a = m.active();
                    a.records += 1;
                    a.data_bytes += size;
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    m.durable = m.payloads.len() as u64;
                }
                Op::Roll => {
                    wal.roll_segment().unwrap();
                    if m.active().records > 0 {
                        m.durable = m.payloads.len() as u64;
                        m.seal_and_start();
                    }
                }
                Op::Truncate(c) => {
                    let c = c % (m.next_lsn() + 2);
                    let r = wal.truncate_before(c).unwrap();
                    let mut deleted = 0;
                    while m.segs.len() > 1 && m.segs[0].first + m.segs[0].records <= c {
                        m.segs.remove(0);
                        deleted += 1;
                    }
                    prop_assert_eq!(r.segments_deleted, deleted);
                }
                Op::Reopen => {
                    drop(wal); // Drop syncs.
                    m.durable = m.payloads.len() as u64;
                    wal = open(&sim);
                    m.reopened();
                }
                Op::Crash(seed) => {
                    wal.simulate_crash();
                    let mut x = seed | 1;
                    sim = sim.crash_image(&mut || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x });
                    wal = open(&sim);
                    // Anything between the durable and the appended records may survive.
                    let kept = wal.next_lsn() - 1;
                    prop_assert!(kept >= m.durable && kept <= m.payloads.len() as u64,
                        "kept {} durable {} appended {}", kept, m.durable, m.payloads.len());
                    m.payloads.truncate(kept as usize);
                    m.durable = kept;
                    // Segments that lost all their records vanish (or are replaced).
                    while m.segs.len() > 1 && m.active().first > kept + 1 {
                        m.segs.pop();
                    }
                    let a = m.active();
                    a.records = kept + 1 - a.first;
                    m.reopened();
                }
            }
            agree(&wal, &m)?;
        }
    }
}
