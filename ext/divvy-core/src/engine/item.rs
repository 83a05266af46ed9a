//! One unit of work as the master holds it.

use std::time::Instant;

use crate::wire::payload::Payload;

/// One dispatched item: where it came in dispatch order, its Marshal dump
/// and which try this is. The master holds it until it is settled, so that
/// a worker's death or a retry can send it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Zero-based position of the item among all those `dispatch` yielded
    /// (other shards' too), its dispatch index.
    pub index: u64,
    /// The Marshal dump of the argument array.
    pub payload: Payload,
    /// Which try this is: 1 for the first, 2 for the first retry.
    pub attempt: u32,
    /// True when the master keeps the arguments `dispatch` yielded for this
    /// item (its dump may not load back): the engine tells it when the
    /// item settles.
    pub kept: bool,
    /// The digest of `payload` when the run keeps a job log (see
    /// `joblog::digest`), 0 otherwise.
    pub digest: u64,
    /// When this try was sent to a worker; None until it is.
    pub sent_at: Option<Instant>,
    /// True once the job log recorded the item as performed, before its
    /// answer arrived (see `journal`).
    pub journaled: bool,
    /// How many workers died of their own accord holding it as the next
    /// item to start, and so perhaps while reading it (see `settle`).
    pub bounced: u32,
}

impl Item {
    /// Returns the first try of the item at `index` carrying `payload`.
    pub fn new(index: u64, payload: Payload) -> Item {
        Item {
            index,
            payload,
            attempt: 1,
            kept: false,
            digest: 0,
            sent_at: None,
            journaled: false,
            bounced: 0,
        }
    }
}
