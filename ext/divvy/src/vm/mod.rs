//! What divvy asks of the Ruby VM, for the master and the workers alike:
//! calls with an Array of arguments, its exception classes, the standard
//! streams, waiting without the GVL, process titles and the garbage
//! collector.

pub mod call;
pub mod errors;
pub mod gc;
pub mod nogvl;
pub mod stdio;
pub mod title;
