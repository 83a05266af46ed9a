//! What travels between the master and its workers, with no Ruby: frames
//! and their decoder, the memory a large result lands in, the payload of
//! an item (owned bytes and referenced large Strings), the master's outbox
//! and link to one worker, a worker's batched answers and the large results
//! it lends its pipe, the shared counter of finished items, and the wake
//! pipe that interrupts the master's wait.

pub mod answers;
pub mod counter;
pub mod decoder;
pub mod frame;
pub mod landing;
pub mod lent;
pub mod link;
pub mod outbox;
pub mod payload;
pub mod wake;
